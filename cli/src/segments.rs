//! `shmpar ls`, `shmpar gc` and `shmpar inspect`: looking at segments that
//! other processes own.

use serde::Serialize;
use shmpar::DType;
use shmpar::core::segment::{Location, Peek};
use shmpar::gc::{self, SegmentInfo};

use crate::units::bytes;
use crate::{CliError, CliResult, out};

/// Whether `c` could change what a terminal shows beyond itself: a C0 or
/// C1 control (ESC starts colour and cursor sequences, CR and LF start
/// lines) or a bidirectional override, which reorders the text around it.
fn is_unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A segment name as a table shows it, quoted as GNU `ls` quotes file
/// names for a terminal (`--quoting-style=shell-escape`), so that no name
/// can forge rows or colours and every quoted name pastes back into a
/// shell: plain names as they are, names with spaces or shell
/// metacharacters in single quotes (`'a b'`), names with control
/// characters in ANSI-C quotes with escapes (`$'shmpar_\033[31m'`,
/// `$'a\nb'`). JSON output keeps names exact.
pub(crate) fn quote_name(name: &str) -> String {
    let plain = |c: char| {
        c.is_ascii_alphanumeric() || "_-.,+:@%/".contains(c) || (!c.is_ascii() && !is_unsafe_char(c))
    };
    if !name.is_empty() && name.chars().all(plain) {
        return name.to_string();
    }
    if !name.chars().any(is_unsafe_char) {
        return format!("'{}'", name.replace('\'', "'\\''"));
    }
    let mut quoted = String::from("$'");
    for c in name.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '\'' => quoted.push_str("\\'"),
            '\t' => quoted.push_str("\\t"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            c if is_unsafe_char(c) => {
                let mut utf8 = [0u8; 4];
                for b in c.encode_utf8(&mut utf8).bytes() {
                    quoted.push_str(&format!("\\{b:03o}"));
                }
            }
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    quoted
}

fn shape_text(shape: &[usize]) -> String {
    format!("{shape:?}")
}

/// Whether the segment is in use: a process holds a handle of it (core
/// asks the kernel for its liveness lock; a probe that fails counts as in
/// use), which is what `gc` goes by.
fn in_use_text(info: &SegmentInfo) -> &'static str {
    if info.alive { "yes" } else { "no" }
}

/// `shmpar ls [--json]`.
pub(crate) fn ls(json: bool) -> CliResult {
    let list = gc::list();
    if json {
        let text = serde_json::to_string_pretty(&list).map_err(|e| CliError::msg(e.to_string()))?;
        return out(&format!("{text}\n"));
    }
    if list.is_empty() {
        return out("no shmpar segments in /dev/shm\n");
    }
    let rows: Vec<[String; 9]> = list
        .iter()
        .map(|s| {
            [
                quote_name(&s.name),
                s.dtype.clone().unwrap_or_else(|| "-".into()),
                shape_text(&s.shape),
                bytes(s.bytes),
                s.page_size.map_or_else(|| "-".into(), |p| bytes(p as u64)),
                s.creator_pid.to_string(),
                in_use_text(s).into(),
                if s.persistent { "yes" } else { "no" }.into(),
                s.state.clone(),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "DTYPE",
        "SHAPE",
        "SIZE",
        "PAGE",
        "CREATOR",
        "IN USE",
        "PERSISTENT",
        "STATE",
    ]
    .map(String::from);
    let right = [false, false, false, true, true, true, false, false, false];
    out(&table(&header, &rows, &right))
}

/// Left- or right-aligned columns separated by two spaces.
pub(crate) fn table<const N: usize>(header: &[String; N], rows: &[[String; N]], right: &[bool; N]) -> String {
    let mut width = header.each_ref().map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(header).chain(rows) {
        let cells: Vec<String> = (0..N)
            .map(|i| {
                if right[i] {
                    format!("{:>w$}", row[i], w = width[i])
                } else {
                    format!("{:<w$}", row[i], w = width[i])
                }
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// `shmpar gc [--dry-run] [--include-persistent]`.
pub(crate) fn gc(dry_run: bool, include_persistent: bool) -> CliResult {
    let orphans = gc::collect_with(dry_run, include_persistent);
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut text = String::new();
    for s in &orphans {
        text.push_str(&format!(
            "{verb} {} ({} {}, {}, creator pid {}, held by no process)\n",
            quote_name(&s.name),
            s.dtype.as_deref().unwrap_or("-"),
            shape_text(&s.shape),
            bytes(s.bytes),
            s.creator_pid
        ));
    }
    let total: u64 = orphans.iter().map(|s| s.bytes).sum();
    let count = orphans.len();
    let plural = if count == 1 { "" } else { "s" };
    text.push_str(&match (dry_run, count) {
        (_, 0) => "gc: no orphaned segments\n".to_string(),
        (true, _) if include_persistent => format!(
            "gc: {count} orphaned segment{plural} ({}); run `shmpar gc --include-persistent` to remove them\n",
            bytes(total)
        ),
        (true, _) => format!(
            "gc: {count} orphaned segment{plural} ({}); run `shmpar gc` to remove them\n",
            bytes(total)
        ),
        (false, _) => format!("gc: removed {count} segment{plural}, {} freed\n", bytes(total)),
    });
    if !include_persistent {
        let kept = gc::list()
            .iter()
            .filter(|s| s.persistent && !s.alive && s.creator_pid != 0)
            .count();
        if kept > 0 {
            text.push_str(&format!(
                "gc: kept {kept} persisted segment(s) that no process holds (--include-persistent removes them)\n"
            ));
        }
    }
    out(&text)
}

/// What `inspect --json` prints.
#[derive(Serialize)]
struct Inspection {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    elements: usize,
    bytes: u64,
    data_offset: usize,
    data_bytes: usize,
    header_offset: usize,
    /// Bytes per page of the object (4096, or a huge page size).
    page_size: usize,
    creator_pid: i32,
    /// Whether the creator process still runs (its pid and start time).
    alive: bool,
    /// Whether a process holds a handle of the segment (its liveness lock).
    in_use: bool,
    persistent: bool,
    state: String,
    stats: Stats,
}

/// Summary statistics over the non-NaN elements.
#[derive(Serialize)]
struct Stats {
    count: u64,
    nan: u64,
    min: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
    std: Option<f64>,
}

/// Welford's running count, NaN count, extremes, mean and squared
/// deviations, fed in element order.
#[derive(Clone, Copy, Debug)]
struct Welford {
    count: u64,
    nan: u64,
    min: f64,
    max: f64,
    mean: f64,
    m2: f64,
}

impl Default for Welford {
    fn default() -> Self {
        Welford {
            count: 0,
            nan: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            mean: 0.0,
            m2: 0.0,
        }
    }
}

impl Welford {
    fn extend(&mut self, values: impl Iterator<Item = f64>) {
        for x in values {
            if x.is_nan() {
                self.nan += 1;
                continue;
            }
            self.count += 1;
            self.min = self.min.min(x);
            self.max = self.max.max(x);
            let delta = x - self.mean;
            self.mean += delta / self.count as f64;
            self.m2 += delta * (x - self.mean);
        }
    }

    fn finish(self) -> Stats {
        let some = |v: f64| (self.count > 0).then_some(v);
        Stats {
            count: self.count,
            nan: self.nan,
            min: some(self.min),
            max: some(self.max),
            mean: some(self.mean),
            std: some((self.m2 / self.count as f64).sqrt()),
        }
    }
}

/// One pass of Welford's update over the elements, as `f64`.
#[cfg(test)]
fn stats_of(values: impl Iterator<Item = f64>) -> Stats {
    let mut acc = Welford::default();
    acc.extend(values);
    acc.finish()
}

/// Reads one element from its bytes, as `f64`.
type Decode = fn(&[u8]) -> f64;

/// How to read one element of each dtype from its little-endian bytes
/// (`docs/segment-layout.md`: NumPy's `<f8`, `<i4`, ...) as `f64`.
fn decoder(dtype: DType) -> Option<(usize, Decode)> {
    macro_rules! le {
        ($t:ty, $conv:expr) => {
            (size_of::<$t>(), |b: &[u8]| {
                let mut raw = [0u8; size_of::<$t>()];
                raw.copy_from_slice(b);
                let to_f64: fn($t) -> f64 = $conv;
                to_f64(<$t>::from_le_bytes(raw))
            })
        };
    }
    Some(match dtype {
        DType::F32 => le!(f32, f64::from),
        DType::F64 => le!(f64, |x| x),
        DType::I8 => le!(i8, f64::from),
        DType::I16 => le!(i16, f64::from),
        DType::I32 => le!(i32, f64::from),
        DType::I64 => le!(i64, |x| x as f64),
        DType::U8 => le!(u8, f64::from),
        DType::U16 => le!(u16, f64::from),
        DType::U32 => le!(u32, f64::from),
        DType::U64 => le!(u64, |x| x as f64),
        _ => return None,
    })
}

/// Statistics of the segment's elements, read with `pread` block by block
/// (`Peek::read_data`), never mapped: a foreign segment's owner may shrink
/// it meanwhile, which makes the read fail ([`shmpar::core::Error::Truncated`])
/// instead of killing this process with SIGBUS, as a mapping would.
fn stats_of_segment(peek: &Peek, name: &str) -> CliResult<Stats> {
    let layout = peek.layout();
    let (size, decode) = decoder(layout.dtype).ok_or_else(|| {
        CliError::msg(format!(
            "segment {name} holds {} elements, which this build cannot summarize",
            layout.dtype
        ))
    })?;
    let total = layout.elements().saturating_mul(size);
    // 1 MiB a read, a whole number of elements.
    let mut block = vec![0u8; (1 << 20) / size * size];
    let mut values: Vec<f64> = Vec::with_capacity(block.len() / size);
    let mut acc = Welford::default();
    let mut offset = 0;
    while offset < total {
        let want = block.len().min(total - offset);
        // A short read is an error (`Truncated`); fewer than one element
        // means the header promised more data than there is.
        let got = peek.read_data(offset, &mut block[..want])? / size * size;
        if got == 0 {
            return Err(CliError::msg(format!(
                "segment {name} ends {offset} bytes into its {total} bytes of data"
            )));
        }
        values.clear();
        values.extend(block[..got].chunks_exact(size).map(decode));
        acc.extend(values.iter().copied());
        offset += got;
    }
    Ok(acc.finish())
}

/// `shmpar inspect NAME [--json]`.
pub(crate) fn inspect(name: &str, json: bool) -> CliResult {
    let name = name.strip_prefix("/dev/shm/").unwrap_or(name);
    let name = name.strip_prefix('/').unwrap_or(name);
    let location = Location::shm(name)?;
    // Read, never mapped: see `stats_of_segment`.
    let peek = Peek::open(&location)?;
    let layout = peek.layout().clone();
    let info =
        gc::info(name).ok_or_else(|| CliError::msg(format!("segment {name} is not a shmpar segment")))?;
    let stats = stats_of_segment(&peek, name)?;
    let report = Inspection {
        name: name.to_owned(),
        dtype: layout.dtype.name().to_owned(),
        shape: layout.shape.clone(),
        elements: layout.elements(),
        bytes: info.bytes,
        data_offset: layout.data_offset,
        data_bytes: layout.data_len,
        header_offset: layout.header_offset,
        page_size: layout.page_size,
        creator_pid: layout.creator.pid,
        alive: layout.creator.is_alive(),
        in_use: peek.liveness().in_use(),
        persistent: layout.persistent,
        state: info.state,
        stats,
    };
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| CliError::msg(e.to_string()))?;
        return out(&format!("{text}\n"));
    }
    let num = |v: Option<f64>| match v {
        None => "-".to_string(),
        Some(x) if x != 0.0 && x.is_finite() && !(1e-4..1e15).contains(&x.abs()) => format!("{x:e}"),
        Some(x) => format!("{x}"),
    };
    let s = &report.stats;
    out(&format!(
        "name         {}\n\
         dtype        {} (NumPy {})\n\
         shape        {}\n\
         elements     {}\n\
         bytes        {} ({} of data at offset {}, header page at {})\n\
         pages        {} bytes each\n\
         creator      pid {} ({})\n\
         in use       {}\n\
         persistent   {}\n\
         state        {}\n\
         count        {} (not NaN)\n\
         nan          {}\n\
         min          {}\n\
         max          {}\n\
         mean         {}\n\
         std          {}\n",
        quote_name(&report.name),
        report.dtype,
        layout.dtype.numpy_str(),
        shape_text(&report.shape),
        report.elements,
        report.bytes,
        report.data_bytes,
        report.data_offset,
        report.header_offset,
        report.page_size,
        report.creator_pid,
        if report.alive { "alive" } else { "dead" },
        if report.in_use {
            "yes: a process holds a handle of it"
        } else {
            "no: no process holds a handle of it"
        },
        if report.persistent {
            "yes: kept after its creator exits"
        } else {
            "no: unlinked when its creator drops it"
        },
        report.state,
        s.count,
        s.nan,
        num(s.min),
        num(s.max),
        num(s.mean),
        num(s.std),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_as_gnu_ls_quotes_them() {
        assert_eq!(quote_name("shmpar_abc-1.2"), "shmpar_abc-1.2");
        assert_eq!(quote_name("shmpar_é"), "shmpar_é");
        assert_eq!(quote_name("shmpar_a b"), "'shmpar_a b'");
        assert_eq!(quote_name("shmpar_it's"), "'shmpar_it'\\''s'");
        assert_eq!(quote_name("shmpar_$(x)"), "'shmpar_$(x)'");
        assert_eq!(quote_name("shmpar_\u{1b}[31m"), "$'shmpar_\\033[31m'");
        assert_eq!(quote_name("a\rb\nc\td"), "$'a\\rb\\nc\\td'");
        assert_eq!(quote_name("a'\\\u{7f}"), "$'a\\'\\\\\\177'");
        assert_eq!(quote_name("a\u{9b}b"), "$'a\\302\\233b'");
        assert_eq!(quote_name("a\u{202e}b"), "$'a\\342\\200\\256b'");
        for name in ["a\u{1b}b", "x\ny", "shmpar_\u{202e}"] {
            assert!(!quote_name(name).chars().any(is_unsafe_char), "{name:?}");
        }
    }

    #[test]
    fn statistics_skip_nans() {
        let s = stats_of([1.0, f64::NAN, 3.0, 2.0].into_iter());
        assert_eq!((s.count, s.nan), (3, 1));
        assert_eq!((s.min, s.max, s.mean), (Some(1.0), Some(3.0), Some(2.0)));
        assert!((s.std.unwrap() - (2.0f64 / 3.0).sqrt()).abs() < 1e-15);
        let empty = stats_of(std::iter::empty());
        assert_eq!((empty.count, empty.mean), (0, None));
    }
}
