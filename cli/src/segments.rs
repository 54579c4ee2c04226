//! `shmpar ls`, `shmpar gc` and `shmpar inspect`: looking at segments that
//! other processes own.

use ndarray::IxDyn;
use serde::Serialize;
use shmpar::core::segment::{self, Location};
use shmpar::gc::{self, SegmentInfo};
use shmpar::{DType, Element, SharedArray};

use crate::units::bytes;
use crate::{CliError, CliResult, out};

fn shape_text(shape: &[usize]) -> String {
    format!("{shape:?}")
}

fn alive_text(info: &SegmentInfo) -> &'static str {
    match (info.creator_pid, info.alive) {
        (0, _) => "unknown",
        (_, true) => "yes",
        (_, false) => "no",
    }
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
    let rows: Vec<[String; 8]> = list
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.dtype.clone().unwrap_or_else(|| "-".into()),
                shape_text(&s.shape),
                bytes(s.bytes),
                s.creator_pid.to_string(),
                alive_text(s).into(),
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
        "CREATOR",
        "ALIVE",
        "PERSISTENT",
        "STATE",
    ]
    .map(String::from);
    let right = [false, false, false, true, true, false, false, false];
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
            "{verb} {} ({} {}, {}, creator pid {} is dead)\n",
            s.name,
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
                "gc: kept {kept} persisted segment(s) of dead creators (--include-persistent removes them)\n"
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
    creator_pid: i32,
    alive: bool,
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

/// One pass of Welford's update over the elements, as `f64`.
fn stats_of(values: impl Iterator<Item = f64>) -> Stats {
    let (mut count, mut nan) = (0u64, 0u64);
    let (mut min, mut max, mut mean, mut m2) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0);
    for x in values {
        if x.is_nan() {
            nan += 1;
            continue;
        }
        count += 1;
        min = min.min(x);
        max = max.max(x);
        let delta = x - mean;
        mean += delta / count as f64;
        m2 += delta * (x - mean);
    }
    let some = |v: f64| (count > 0).then_some(v);
    Stats {
        count,
        nan,
        min: some(min),
        max: some(max),
        mean: some(mean),
        std: some((m2 / count as f64).sqrt()),
    }
}

/// Statistics of a segment holding `T`, attached by name.
fn stats_typed<T: Element>(name: &str, to_f64: fn(T) -> f64) -> CliResult<Stats> {
    let array = SharedArray::<T, IxDyn>::attach(name)?;
    let view = array.view();
    Ok(stats_of(view.iter().map(|&x| to_f64(x))))
}

fn stats_by_dtype(name: &str, dtype: DType) -> CliResult<Stats> {
    match dtype {
        DType::F32 => stats_typed::<f32>(name, f64::from),
        DType::F64 => stats_typed::<f64>(name, |x| x),
        DType::I8 => stats_typed::<i8>(name, f64::from),
        DType::I16 => stats_typed::<i16>(name, f64::from),
        DType::I32 => stats_typed::<i32>(name, f64::from),
        DType::I64 => stats_typed::<i64>(name, |x| x as f64),
        DType::U8 => stats_typed::<u8>(name, f64::from),
        DType::U16 => stats_typed::<u16>(name, f64::from),
        DType::U32 => stats_typed::<u32>(name, f64::from),
        DType::U64 => stats_typed::<u64>(name, |x| x as f64),
        other => Err(CliError::msg(format!(
            "segment {name} holds {other} elements, which this build cannot summarize"
        ))),
    }
}

/// `shmpar inspect NAME [--json]`.
pub(crate) fn inspect(name: &str, json: bool) -> CliResult {
    let name = name.strip_prefix("/dev/shm/").unwrap_or(name);
    let name = name.strip_prefix('/').unwrap_or(name);
    let location = Location::shm(name)?;
    let layout = segment::peek(&location)?;
    let info =
        gc::info(name).ok_or_else(|| CliError::msg(format!("segment {name} is not a shmpar segment")))?;
    let stats = stats_by_dtype(name, layout.dtype)?;
    let report = Inspection {
        name: name.to_owned(),
        dtype: layout.dtype.name().to_owned(),
        shape: layout.shape.clone(),
        elements: layout.elements(),
        bytes: info.bytes,
        data_offset: layout.data_offset,
        data_bytes: layout.data_len,
        header_offset: layout.header_offset,
        creator_pid: layout.creator.pid,
        alive: layout.creator.is_alive(),
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
         creator      pid {} ({})\n\
         persistent   {}\n\
         state        {}\n\
         count        {} (not NaN)\n\
         nan          {}\n\
         min          {}\n\
         max          {}\n\
         mean         {}\n\
         std          {}\n",
        report.name,
        report.dtype,
        layout.dtype.numpy_str(),
        shape_text(&report.shape),
        report.elements,
        report.bytes,
        report.data_bytes,
        report.data_offset,
        report.header_offset,
        report.creator_pid,
        if report.alive { "alive" } else { "dead" },
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
    fn statistics_skip_nans() {
        let s = stats_of([1.0, f64::NAN, 3.0, 2.0].into_iter());
        assert_eq!((s.count, s.nan), (3, 1));
        assert_eq!((s.min, s.max, s.mean), (Some(1.0), Some(3.0), Some(2.0)));
        assert!((s.std.unwrap() - (2.0f64 / 3.0).sqrt()).abs() < 1e-15);
        let empty = stats_of(std::iter::empty());
        assert_eq!((empty.count, empty.mean), (0, None));
    }
}
