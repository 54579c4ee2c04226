//! Concurrent cleanup (gc while jobs run) and load (several coordinators
//! on an oversubscribed machine).

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ndarray::{Array1, Ix1};
use shmpar::core::chunk::chunk_range;
use shmpar::{Ctx, Pool, SegmentOptions, Serde, SharedArray};
use shmpar_kernels::stencil::{heat_serial_1d, heat_step_1d};

use crate::Args;
use crate::common::{Rng, Tally, prefix, wait_child};
use crate::functional::phase_kernel;

fn opts(name: &str) -> SegmentOptions {
    SegmentOptions::new().name(name)
}

/// Forks a child that creates `count` segments and dies without removing
/// them: orphans for gc to find.
fn plant_orphans(prefix: &str, first: usize, count: usize) -> Result<(), String> {
    // SAFETY: this process is single-threaded (the driver starts no thread
    // in this scenario), so the child may do anything.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        for i in first..first + count {
            // Not persisted (gc leaves persisted segments alone): a crash
            // that skipped the destructors.
            match SharedArray::<u8, Ix1>::create_with(&opts(&format!("{prefix}orphan{i}")), 4096) {
                Ok(a) => std::mem::forget(a),
                // SAFETY: _exit is always sound.
                Err(_) => unsafe { libc::_exit(1) },
            }
        }
        // SAFETY: _exit is always sound.
        unsafe { libc::_exit(0) };
    }
    if pid < 0 {
        return Err("fork failed".into());
    }
    match wait_child(pid, Duration::from_secs(10)) {
        Some(0) => Ok(()),
        other => Err(format!("the orphan planter ended with {other:?}")),
    }
}

fn spawn_self(args: &[&str]) -> Result<Child, String> {
    Command::new("/proc/self/exe")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {args:?}: {e}"))
}

fn finish_child(child: &mut Child, limit: Duration) -> (Option<i32>, String) {
    let status = wait_child(child.id() as i32, limit);
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    (status, out)
}

fn field(line: &str, key: &str) -> usize {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or(0)
}

/// Issue 6.5: two gc processes collect in a loop while this coordinator
/// creates arrays and runs jobs and a third process keeps leaving orphans:
/// no live segment is ever removed, every orphan is removed exactly once.
pub fn gc_race(args: &Args) -> Tally {
    let seconds = args.num("seconds", 3);
    let prefix = prefix("gc-race");
    let mut tally = Tally::new("gc-race");
    let pool = match Pool::builder().workers(3).build() {
        Ok(p) => p,
        Err(e) => {
            tally.trial("build", Err(e.to_string()));
            return tally;
        }
    };
    let secs = seconds.to_string();
    let mut gcs: Vec<Child> = Vec::new();
    for _ in 0..2 {
        match spawn_self(&["gc-loop", "--seconds", &secs, "--prefix", &prefix]) {
            Ok(c) => gcs.push(c),
            Err(e) => tally.trial("spawn gc", Err(e)),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut planted = 0;
    let mut i = 0;
    while Instant::now() < deadline {
        if i % 5 == 0 {
            let r = plant_orphans(&prefix, planted, 3);
            if r.is_ok() {
                planted += 3;
            }
            tally.trial("plant orphans", r);
        }
        let name = format!("{prefix}live{i}");
        let outcome = (|| -> Result<(), String> {
            let mut a =
                SharedArray::<u64, Ix1>::create_with(&opts(&name), 10_000 + i).map_err(|e| e.to_string())?;
            pool.for_each_chunk_with(&mut a, i as u64, |_c, mut chunk, &v| chunk.fill(v))
                .map_err(|e| format!("job on {name}: {e}"))?;
            let sum = pool
                .map_reduce(&a, |c| c.sum(), |x, y| x + y)
                .map_err(|e| format!("reduce on {name}: {e}"))?;
            if sum != (i as u64) * (10_000 + i as u64) {
                return Err(format!("wrong sum {sum}"));
            }
            if !std::path::Path::new("/dev/shm").join(&name).exists() {
                return Err(format!("gc removed the live array {name}"));
            }
            Ok(())
        })();
        tally.trial(&format!("job {i}"), outcome);
        i += 1;
    }
    let mut removed_by_gcs = 0;
    for (k, mut gc) in gcs.into_iter().enumerate() {
        let (status, out) = finish_child(&mut gc, Duration::from_secs(seconds + 30));
        let line = out
            .lines()
            .find(|l| l.starts_with("gc-loop"))
            .unwrap_or_default()
            .to_owned();
        removed_by_gcs += field(&line, "removed");
        let outcome = match status {
            Some(0) if field(&line, "live_removed") == 0 => Ok(()),
            Some(_) => Err(format!("gc {k}: {line}")),
            None => Err(format!("HANG: gc {k} ran past its time")),
        };
        tally.trial(&format!("gc {k}"), outcome);
    }
    let last: Vec<_> = shmpar::gc::collect(false)
        .into_iter()
        .filter(|s| s.name.starts_with(&format!("{prefix}orphan")))
        .collect();
    // Every pool start collects orphans too, so other programs (tests run
    // in parallel) may take some: no orphan may be counted twice, and none
    // may be left.
    let total = removed_by_gcs + last.len();
    let remaining: Vec<String> = crate::common::segments_of(&format!("{prefix}orphan"), -1);
    let accounting = if total <= planted && remaining.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{planted} orphans planted, {removed_by_gcs} removed by the gcs and {} at the end, {remaining:?} left",
            last.len()
        ))
    };
    tally.trial("each orphan removed at most once, none left", accounting);
    drop(pool);
    let after = tally.after_trial(&prefix);
    tally.trial("nothing left", after);
    tally.extra("orphans", planted);
    tally.extra("removed_by_concurrent_gcs", removed_by_gcs);
    tally
}

/// Helper process: `gc::collect` in a loop.
pub fn gc_loop(args: &Args) -> Tally {
    let prefix = args.get("prefix").unwrap_or("shmpar_rt_").to_owned();
    let deadline = Instant::now() + Duration::from_secs(args.num("seconds", 3));
    let (mut removed, mut live, mut rounds) = (0, 0, 0);
    while Instant::now() < deadline {
        for s in shmpar::gc::collect(false) {
            if s.name.starts_with(&format!("{prefix}orphan")) {
                removed += 1;
            } else if s.name.starts_with(&prefix) || s.alive {
                live += 1;
            }
        }
        rounds += 1;
    }
    println!("gc-loop removed={removed} live_removed={live} rounds={rounds}");
    let mut t = Tally::new("gc-loop");
    t.trial(
        "loop",
        if live == 0 {
            Ok(())
        } else {
            Err("removed live segments".into())
        },
    );
    t
}

/// Issue 6.6: several coordinators, each with its own pool, on an
/// oversubscribed machine: every job completes with the verified result.
pub fn load(args: &Args) -> Tally {
    let k = args.num("coordinators", 3);
    let seconds = args.num("seconds", 3);
    let mut tally = Tally::new("load");
    let mut children = Vec::new();
    for i in 0..k {
        match spawn_self(&[
            "load-one",
            "--seconds",
            &seconds.to_string(),
            "--seed",
            &i.to_string(),
        ]) {
            Ok(c) => children.push(c),
            Err(e) => tally.trial("spawn", Err(e)),
        }
    }
    let mut jobs_per_sec = Vec::new();
    for (i, mut child) in children.into_iter().enumerate() {
        let (status, out) = finish_child(&mut child, Duration::from_secs(seconds + 60));
        for l in out.lines().filter(|l| l.starts_with("FAIL")) {
            eprintln!("coordinator {i}: {l}");
        }
        let line = out
            .lines()
            .find(|l| l.starts_with("scenario=load-one"))
            .unwrap_or_default();
        let (n, ok) = (field(line, "trials"), field(line, "ok"));
        let hung = status.is_none();
        tally.add_counts(
            n,
            ok,
            field(line, "leaks"),
            field(line, "zombies"),
            field(line, "hangs") + usize::from(hung),
        );
        if hung || status != Some(0) || n == 0 {
            tally.trial(
                &format!("coordinator {i}"),
                Err(format!("ended with {status:?}: {line}")),
            );
        }
        jobs_per_sec.push(format!("{:.0}", n as f64 / seconds.max(1) as f64));
    }
    tally.extra("coordinators", k);
    tally.extra("workers_each", 3);
    tally.extra("seconds", seconds);
    tally.extra("jobs_per_s", jobs_per_sec.join("/"));
    tally
}

/// Helper process: one coordinator of the load scenario.
pub fn load_one(args: &Args) -> Tally {
    let seconds = args.num("seconds", 3);
    let seed = args.num("seed", 0);
    let mut rng = Rng::new(seed + 100);
    let prefix = prefix("load");
    let mut tally = Tally::new("load-one");
    let pool = match Pool::builder().workers(3).build() {
        Ok(p) => p,
        Err(e) => {
            tally.trial("build", Err(e.to_string()));
            return tally;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut i = 0u64;
    while Instant::now() < deadline {
        let kind = rng.below(4);
        let n = 1 + rng.below(40_000) as usize;
        let started = Instant::now();
        let outcome = load_job(&pool, &prefix, kind, n, rng.next(), i);
        let outcome = match (outcome, started.elapsed()) {
            (Ok(()), t) if t > Duration::from_secs(10) => Err(format!("HANG: job took {t:?}")),
            (o, _) => o,
        };
        tally.trial(&format!("job {i} kind {kind} n {n}"), outcome);
        i += 1;
    }
    drop(pool);
    let after = tally.after_trial(&prefix);
    tally.trial("nothing left", after);
    tally
}

fn load_job(pool: &Pool, prefix: &str, kind: u64, n: usize, salt: u64, i: u64) -> Result<(), String> {
    let e = |e: shmpar::Error| e.to_string();
    let name = |s: &str| opts(&format!("{prefix}{s}{i}"));
    match kind {
        0 => {
            let board =
                SharedArray::<u64, Ix1>::create_with(&name("board"), n.max(3)).map_err(|e| e.to_string())?;
            let data = SharedArray::<u64, Ix1>::create_with(&name("data"), 3).map_err(|e| e.to_string())?;
            let phases = 2 + salt % 7;
            let bad = pool
                .map_reduce_with(
                    &data,
                    Serde((board.name(), phases)),
                    |ctx: &Ctx<'_>, _c, Serde((b, p))| phase_kernel(ctx, b, *p),
                    |x: u64, y: u64| x + y,
                )
                .map_err(e)?;
            if bad != 0 {
                Err(format!("{bad} wrong board reads"))
            } else {
                Ok(())
            }
        }
        1 => {
            let source = Array1::from_shape_fn(n, |j| (j as u64).wrapping_mul(salt | 1));
            let a = SharedArray::from_array_with(&name("sum"), &source).map_err(|e| e.to_string())?;
            let want = source.iter().fold(0u64, |s, &x| s.wrapping_add(x));
            let got = pool
                .map_reduce(
                    &a,
                    |c| c.iter().fold(0u64, |s, &x| s.wrapping_add(x)),
                    u64::wrapping_add,
                )
                .map_err(e)?;
            if got != want {
                Err(format!("sum {got} != {want}"))
            } else {
                Ok(())
            }
        }
        2 => {
            let init = Array1::from_shape_fn(n.max(3), |j| ((j as u64 ^ salt) % 100) as f64);
            let mut a = SharedArray::from_array_with(&name("heata"), &init).map_err(|e| e.to_string())?;
            let mut b = SharedArray::from_array_with(&name("heatb"), &init).map_err(|e| e.to_string())?;
            let steps = 1 + (salt % 9) as usize;
            pool.double_buffer(&mut a, &mut b, steps, 0.25f64, |ctx, src, dst, &alpha| {
                heat_step_1d(src, dst, ctx.rows(), alpha).expect("heat step");
            })
            .map_err(e)?;
            let mut reference = init.clone();
            heat_serial_1d(reference.view_mut(), steps, 0.25);
            let got = if steps.is_multiple_of(2) {
                a.view()
            } else {
                b.view()
            };
            if got != reference.view() {
                Err(format!("{steps} heat steps differ"))
            } else {
                Ok(())
            }
        }
        _ => {
            let mut a = SharedArray::<u32, Ix1>::create_with(&name("each"), n).map_err(|e| e.to_string())?;
            pool.for_each_chunk_with(&mut a, (), |ctx, mut c, _: &()| c.fill(ctx.rank() as u32 + 1))
                .map_err(e)?;
            let w = pool.workers();
            for r in 0..w {
                if a.view()
                    .slice(ndarray::s![chunk_range(n, w, r)])
                    .iter()
                    .any(|&x| x != r as u32 + 1)
                {
                    return Err(format!("rank {r}'s rows are wrong"));
                }
            }
            Ok(())
        }
    }
}
