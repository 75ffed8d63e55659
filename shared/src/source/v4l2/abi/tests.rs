//! The checked-in ABI against `<linux/videodev2.h>`, with no libclang: a C
//! file generated from the table below asserts at compile time
//! (`_Static_assert`) that `offsetof`/`sizeof`/`_Alignof` of every struct
//! and field pagecam uses, and the `VIDIOC_*` request numbers, equal what
//! Rust computes for the target the test was built for (`offset_of!`,
//! `size_of`, `align_of`, and the `Request` constants of `sys`). It only
//! needs compiling, not running, so a cross build is checked with the
//! target's C compiler (`arm-linux-gnueabihf-gcc` for armv7, for example)
//! while its tests run under qemu. Without a compiler or the kernel
//! headers the test fails and says what to install: it never passes
//! without comparing.
//!
//! With the `v4l` feature the `v4l` crate's bindings (then the active ones)
//! are compared too: struct sizes and alignments, and the request numbers,
//! which `sys` computes from them.

use std::collections::BTreeMap;
use std::io::Read;
use std::mem::{align_of, offset_of, size_of, MaybeUninit};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::checked;
use crate::source::v4l2::sys;

/// `key -> value`, one per line the C program prints.
type Layout = BTreeMap<String, u64>;

/// One row of the table: what C and Rust must agree on.
struct Row {
    /// The C expression's text: `struct v4l2_buffer` or
    /// `struct v4l2_buffer`, `m.planes`.
    c_type: &'static str,
    c_field: Option<&'static str>,
    /// (offset, size) of a field, or (size, alignment) of a struct.
    rust: (usize, usize),
}

impl Row {
    fn keys(&self) -> [String; 2] {
        match self.c_field {
            None => [
                format!("sizeof({})", self.c_type),
                format!("_Alignof({})", self.c_type),
            ],
            Some(f) => [
                format!("offsetof({}, {f})", self.c_type),
                format!("sizeof((({} *)0)->{f})", self.c_type),
            ],
        }
    }
}

fn size_of_pointee<T>(_: *const T) -> usize {
    size_of::<T>()
}

/// Size of a (possibly nested, possibly packed or union) field of `$ty`.
macro_rules! field_size {
    ($ty:ty, $($field:ident).+) => {{
        let base = MaybeUninit::<$ty>::uninit();
        let p = base.as_ptr();
        // SAFETY: `p` points to a live (uninitialised) `$ty`; `&raw const`
        // only computes the field's address inside it and reads nothing, so
        // neither the missing initialisation, a packed (unaligned) field nor
        // a union member matters.
        size_of_pointee(unsafe { &raw const (*p).$($field).+ })
    }};
}

/// Rows for the structs of module `$m`: `"C type" => RustType { "C field":
/// rust.field.path, ... }`. Fields of C's anonymous unions are bindgen's
/// `__bindgen_anon_N` members in Rust.
macro_rules! rows {
    ($m:ident; $($cty:literal => $ty:ident { $($cf:literal : $($rf:ident).+),* $(,)? })*) => {{
        let mut rows = Vec::new();
        $(
            rows.push(Row {
                c_type: $cty,
                c_field: None,
                rust: (size_of::<$m::$ty>(), align_of::<$m::$ty>()),
            });
            $(
                rows.push(Row {
                    c_type: $cty,
                    c_field: Some($cf),
                    rust: (offset_of!($m::$ty, $($rf).+), field_size!($m::$ty, $($rf).+)),
                });
            )*
        )*
        rows
    }};
}

/// Every struct pagecam passes to the kernel, and each of its fields.
fn checked_rows() -> Vec<Row> {
    rows! { checked;
        "struct timeval" => timeval { "tv_sec": tv_sec, "tv_usec": tv_usec }
        "struct v4l2_fract" => v4l2_fract {
            "numerator": numerator, "denominator": denominator,
        }
        "struct v4l2_capability" => v4l2_capability {
            "driver": driver, "card": card, "bus_info": bus_info, "version": version,
            "capabilities": capabilities, "device_caps": device_caps, "reserved": reserved,
        }
        "struct v4l2_fmtdesc" => v4l2_fmtdesc {
            "index": index, "type": type_, "flags": flags, "description": description,
            "pixelformat": pixelformat, "mbus_code": mbus_code, "reserved": reserved,
        }
        "struct v4l2_pix_format" => v4l2_pix_format {
            "width": width, "height": height, "pixelformat": pixelformat, "field": field,
            "bytesperline": bytesperline, "sizeimage": sizeimage, "colorspace": colorspace,
            "priv": priv_, "flags": flags, "ycbcr_enc": __bindgen_anon_1.ycbcr_enc,
            "hsv_enc": __bindgen_anon_1.hsv_enc, "quantization": quantization,
            "xfer_func": xfer_func,
        }
        "struct v4l2_plane_pix_format" => v4l2_plane_pix_format {
            "sizeimage": sizeimage, "bytesperline": bytesperline, "reserved": reserved,
        }
        "struct v4l2_pix_format_mplane" => v4l2_pix_format_mplane {
            "width": width, "height": height, "pixelformat": pixelformat, "field": field,
            "colorspace": colorspace, "plane_fmt": plane_fmt, "num_planes": num_planes,
            "flags": flags, "ycbcr_enc": __bindgen_anon_1.ycbcr_enc,
            "hsv_enc": __bindgen_anon_1.hsv_enc, "quantization": quantization,
            "xfer_func": xfer_func, "reserved": reserved,
        }
        "struct v4l2_format" => v4l2_format {
            "type": type_, "fmt": fmt, "fmt.pix": fmt.pix, "fmt.pix_mp": fmt.pix_mp,
            "fmt.win": fmt.win, "fmt.raw_data": fmt.raw_data,
        }
        "struct v4l2_requestbuffers" => v4l2_requestbuffers {
            "count": count, "type": type_, "memory": memory, "capabilities": capabilities,
            "flags": flags, "reserved": reserved,
        }
        "struct v4l2_captureparm" => v4l2_captureparm {
            "capability": capability, "capturemode": capturemode,
            "timeperframe": timeperframe, "extendedmode": extendedmode,
            "readbuffers": readbuffers, "reserved": reserved,
        }
        "struct v4l2_streamparm" => v4l2_streamparm {
            "type": type_, "parm": parm, "parm.capture": parm.capture,
            "parm.raw_data": parm.raw_data,
        }
        "struct v4l2_frmsize_discrete" => v4l2_frmsize_discrete {
            "width": width, "height": height,
        }
        "struct v4l2_frmsize_stepwise" => v4l2_frmsize_stepwise {
            "min_width": min_width, "max_width": max_width, "step_width": step_width,
            "min_height": min_height, "max_height": max_height, "step_height": step_height,
        }
        "struct v4l2_frmsizeenum" => v4l2_frmsizeenum {
            "index": index, "pixel_format": pixel_format, "type": type_,
            "discrete": __bindgen_anon_1.discrete, "stepwise": __bindgen_anon_1.stepwise,
            "reserved": reserved,
        }
        "struct v4l2_frmival_stepwise" => v4l2_frmival_stepwise {
            "min": min, "max": max, "step": step,
        }
        "struct v4l2_frmivalenum" => v4l2_frmivalenum {
            "index": index, "pixel_format": pixel_format, "width": width, "height": height,
            "type": type_, "discrete": __bindgen_anon_1.discrete,
            "stepwise": __bindgen_anon_1.stepwise, "reserved": reserved,
        }
        "struct v4l2_query_ext_ctrl" => v4l2_query_ext_ctrl {
            "id": id, "type": type_, "name": name, "minimum": minimum, "maximum": maximum,
            "step": step, "default_value": default_value, "flags": flags,
            "elem_size": elem_size, "elems": elems, "nr_of_dims": nr_of_dims, "dims": dims,
            "reserved": reserved,
        }
        "struct v4l2_ext_control" => v4l2_ext_control {
            "id": id, "size": size, "reserved2": reserved2,
            "value": __bindgen_anon_1.value, "value64": __bindgen_anon_1.value64,
            "ptr": __bindgen_anon_1.ptr,
        }
        "struct v4l2_ext_controls" => v4l2_ext_controls {
            "which": __bindgen_anon_1.which, "ctrl_class": __bindgen_anon_1.ctrl_class,
            "count": count, "error_idx": error_idx, "request_fd": request_fd,
            "reserved": reserved, "controls": controls,
        }
        "struct v4l2_plane" => v4l2_plane {
            "bytesused": bytesused, "length": length, "m": m, "m.mem_offset": m.mem_offset,
            "m.userptr": m.userptr, "m.fd": m.fd, "data_offset": data_offset,
            "reserved": reserved,
        }
        "struct v4l2_buffer" => v4l2_buffer {
            "index": index, "type": type_, "bytesused": bytesused, "flags": flags,
            "field": field, "timestamp": timestamp, "timecode": timecode,
            "sequence": sequence, "memory": memory, "m": m, "m.offset": m.offset,
            "m.userptr": m.userptr, "m.planes": m.planes, "m.fd": m.fd, "length": length,
            "reserved2": reserved2, "request_fd": __bindgen_anon_1.request_fd,
        }
    }
}

/// Struct sizes and alignments of the `v4l` crate's bindings (their field
/// lists follow the machine's headers, so only the structs are compared).
#[cfg(feature = "v4l")]
fn v4l_crate_rows() -> Vec<Row> {
    use v4l::v4l_sys;
    macro_rules! structs {
        ($($cty:literal => $ty:ident),* $(,)?) => {
            vec![$(Row {
                c_type: $cty,
                c_field: None,
                rust: (size_of::<v4l_sys::$ty>(), align_of::<v4l_sys::$ty>()),
            }),*]
        };
    }
    structs! {
        "struct timeval" => timeval,
        "struct v4l2_fract" => v4l2_fract,
        "struct v4l2_capability" => v4l2_capability,
        "struct v4l2_fmtdesc" => v4l2_fmtdesc,
        "struct v4l2_pix_format" => v4l2_pix_format,
        "struct v4l2_plane_pix_format" => v4l2_plane_pix_format,
        "struct v4l2_pix_format_mplane" => v4l2_pix_format_mplane,
        "struct v4l2_format" => v4l2_format,
        "struct v4l2_requestbuffers" => v4l2_requestbuffers,
        "struct v4l2_captureparm" => v4l2_captureparm,
        "struct v4l2_streamparm" => v4l2_streamparm,
        "struct v4l2_frmsize_discrete" => v4l2_frmsize_discrete,
        "struct v4l2_frmsize_stepwise" => v4l2_frmsize_stepwise,
        "struct v4l2_frmsizeenum" => v4l2_frmsizeenum,
        "struct v4l2_frmival_stepwise" => v4l2_frmival_stepwise,
        "struct v4l2_frmivalenum" => v4l2_frmivalenum,
        "struct v4l2_query_ext_ctrl" => v4l2_query_ext_ctrl,
        "struct v4l2_ext_control" => v4l2_ext_control,
        "struct v4l2_ext_controls" => v4l2_ext_controls,
        "struct v4l2_plane" => v4l2_plane,
        "struct v4l2_buffer" => v4l2_buffer,
    }
}

/// The request numbers `sys` sends, by their videodev2.h names.
fn requests() -> Vec<(&'static str, u64)> {
    // `ioctl_num_type` is c_ulong (glibc) or c_int (musl); both widen to
    // the `unsigned long` the C program prints.
    #[allow(clippy::unnecessary_cast)]
    fn code<T>(r: sys::Request<T>) -> u64 {
        // 32 bits on every target (musl declares it `int`: no sign extension).
        r.code as u32 as u64
    }
    vec![
        ("VIDIOC_QUERYCAP", code(sys::VIDIOC_QUERYCAP)),
        ("VIDIOC_ENUM_FMT", code(sys::VIDIOC_ENUM_FMT)),
        ("VIDIOC_G_FMT", code(sys::VIDIOC_G_FMT)),
        ("VIDIOC_S_FMT", code(sys::VIDIOC_S_FMT)),
        ("VIDIOC_REQBUFS", code(sys::VIDIOC_REQBUFS)),
        ("VIDIOC_QUERYBUF", code(sys::VIDIOC_QUERYBUF)),
        ("VIDIOC_QBUF", code(sys::VIDIOC_QBUF)),
        ("VIDIOC_DQBUF", code(sys::VIDIOC_DQBUF)),
        ("VIDIOC_STREAMON", code(sys::VIDIOC_STREAMON)),
        ("VIDIOC_STREAMOFF", code(sys::VIDIOC_STREAMOFF)),
        ("VIDIOC_G_PARM", code(sys::VIDIOC_G_PARM)),
        ("VIDIOC_S_PARM", code(sys::VIDIOC_S_PARM)),
        ("VIDIOC_S_EXT_CTRLS", code(sys::VIDIOC_S_EXT_CTRLS)),
        ("VIDIOC_ENUM_FRAMESIZES", code(sys::VIDIOC_ENUM_FRAMESIZES)),
        (
            "VIDIOC_ENUM_FRAMEINTERVALS",
            code(sys::VIDIOC_ENUM_FRAMEINTERVALS),
        ),
        ("VIDIOC_QUERY_EXT_CTRL", code(sys::VIDIOC_QUERY_EXT_CTRL)),
    ]
}

fn rust_layout(rows: &[Row]) -> Layout {
    let mut out = Layout::new();
    for row in rows {
        let [a, b] = row.keys();
        out.insert(a, row.rust.0 as u64);
        out.insert(b, row.rust.1 as u64);
    }
    out
}

/// A C file that compiles only if every key has the value Rust computes.
fn c_program(expected: &Layout) -> String {
    let mut c = String::from(
        "#include <stddef.h>\n#include <sys/time.h>\n#include <linux/videodev2.h>\n\n",
    );
    for (key, value) in expected {
        c.push_str(&format!(
            "_Static_assert((unsigned long long)({key}) == {value}ULL, \"MISMATCH {key} != {value}\");\n"
        ));
    }
    c
}

/// The C compiler for the target these tests were built for: `$CC`, else
/// the target's triplet-prefixed gcc if there is one (Debian installs those
/// names for cross compilers and, natively, for its own), else `cc`.
fn target_cc() -> String {
    if let Ok(cc) = std::env::var("CC") {
        return cc;
    }
    let triplet = if cfg!(target_arch = "arm") {
        "arm-linux-gnueabihf"
    } else if cfg!(target_arch = "aarch64") {
        "aarch64-linux-gnu"
    } else if cfg!(target_arch = "x86_64") {
        "x86_64-linux-gnu"
    } else {
        return "cc".into();
    };
    let gcc = format!("{triplet}-gcc");
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(&gcc).is_file()));
    if found {
        gcc
    } else {
        "cc".into()
    }
}

/// Run `cmd` to completion, failing the test after `limit` (a hung
/// compiler or cargo must not hang the test run).
fn run(cmd: &mut Command, limit: Duration) -> std::io::Result<Output> {
    fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    }
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = drain(child.stdout.take().expect("stdout is piped"));
    let err = drain(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    })
}

/// Compile the asserting C file; the keys whose assertion failed.
fn c_mismatches(dir: &Path, program: &str) -> Vec<String> {
    let src = dir.join("v4l2_abi.c");
    std::fs::write(&src, program).expect("write the C file");
    let cc = target_cc();
    let compiled = match run(
        Command::new(&cc)
            .arg("-std=gnu11")
            .arg("-fsyntax-only")
            .arg(&src),
        Duration::from_secs(120),
    ) {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "the V4L2 layout test needs a C compiler for this target, and `{cc}` was not \
             found: install one (Debian: apt-get install gcc, or the cross gcc) or set CC"
        ),
        Err(e) => panic!("running `{cc}`: {e}"),
    };
    let stderr = String::from_utf8_lossy(&compiled.stderr);
    if compiled.status.success() {
        return Vec::new();
    }
    if stderr.contains("videodev2.h") && !stderr.contains("MISMATCH") {
        panic!(
            "the V4L2 layout test needs the kernel headers (<linux/videodev2.h>): \
             install them (Debian: apt-get install linux-libc-dev)\n{stderr}"
        );
    }
    let bad: Vec<String> = stderr
        .lines()
        .filter(|l| l.contains("error:"))
        .filter_map(|l| {
            l.split_once("MISMATCH ")
                .map(|(_, k)| k.trim_end_matches('"').to_string())
        })
        .collect();
    assert!(
        !bad.is_empty(),
        "`{cc}` could not compile the layout file:\n{stderr}\n{program}"
    );
    bad
}

#[test]
fn layouts_and_request_numbers_match_the_c_header() {
    let rows = checked_rows();
    let mut expected = rust_layout(&rows);
    expected.extend(
        requests()
            .iter()
            .map(|(name, code)| (name.to_string(), *code)),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = c_mismatches(dir.path(), &c_program(&expected));
    assert!(
        bad.is_empty(),
        "the checked-in V4L2 ABI differs from <linux/videodev2.h> for this target \
         (Rust's value != C's):\n{}",
        bad.join("\n")
    );
    // With the `v4l` feature, the crate's bindings are checked the same way.
    #[cfg(feature = "v4l")]
    {
        let bad = c_mismatches(dir.path(), &c_program(&rust_layout(&v4l_crate_rows())));
        assert!(
            bad.is_empty(),
            "the v4l crate's bindings differ:\n{}",
            bad.join("\n")
        );
    }
    // The comparison really ran: a deliberately wrong value must fail.
    let mut wrong = Layout::new();
    wrong.insert("sizeof(struct v4l2_buffer)".into(), 1);
    assert_eq!(
        c_mismatches(dir.path(), &c_program(&wrong)),
        vec!["sizeof(struct v4l2_buffer) != 1".to_string()]
    );
}

#[test]
fn known_sizes_on_this_target() {
    // Independent of the C compiler: the numbers the kernel documents for
    // the structs whose size differs between 32 and 64 bits (pointers,
    // `long`, `struct timeval`). A wrong file already fails bindgen's own
    // assertions at build time; this names the expected values.
    let (buffer, plane, format, ext_control, ext_controls) = if cfg!(target_pointer_width = "64") {
        (88, 64, 208, 20, 32)
    } else {
        (68, 60, 204, 20, 24)
    };
    assert_eq!(size_of::<checked::v4l2_buffer>(), buffer);
    assert_eq!(size_of::<checked::v4l2_plane>(), plane);
    assert_eq!(size_of::<checked::v4l2_format>(), format);
    assert_eq!(size_of::<checked::v4l2_ext_control>(), ext_control);
    assert_eq!(size_of::<checked::v4l2_ext_controls>(), ext_controls);
    // videodev2.h: `#define VIDIOC_QBUF _IOWR('V', 15, struct v4l2_buffer)`.
    let qbuf = (3u64 << 30) | ((buffer as u64) << 16) | (u64::from(b'V') << 8) | 15;
    #[allow(clippy::unnecessary_cast)]
    let ours = sys::VIDIOC_QBUF.code as u32 as u64;
    assert_eq!(ours, qbuf);
}

/// Issue 8: the default build must not need libclang. Checked on the
/// resolved dependency graph of the whole workspace for every target.
#[test]
fn default_build_pulls_in_no_bindgen_or_clang() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = run(
        Command::new(&cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "tree",
                "--workspace",
                "-e",
                "normal,build",
                "--target",
                "all",
                "--prefix",
                "none",
                "--format",
                "{p}",
            ]),
        Duration::from_secs(300),
    )
    .unwrap_or_else(|e| panic!("running `{cargo} tree`: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "`cargo tree` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("pagecam ")),
        "`cargo tree` listed no pagecam:\n{stdout}"
    );
    let offenders: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("bindgen ") || l.starts_with("clang-sys "))
        .collect();
    assert!(
        offenders.is_empty(),
        "the default build depends on {offenders:?}: it would need libclang"
    );
}
