use super::tree::{FAN_IN, Shape};
use super::*;
use crate::sync::BarrierState;
use std::sync::atomic::AtomicUsize;

fn generation_of(state: &BarrierState) -> u32 {
    state.epoch.load(Ordering::Acquire) & GENERATION_MASK
}

/// How the participants of a test hold their handles.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// No tree: the central counter.
    Central,
    /// A tree, every participant with its rank.
    Ranked,
    /// A tree, every participant starting from its CPU.
    Unranked,
}

fn handle<'a>(
    state: &'a BarrierState,
    tree: &'a BarrierTree,
    kind: Kind,
    policy: SpinPolicy,
    rank: u32,
) -> Barrier<'a> {
    let barrier = Barrier::with_spin(state, policy);
    match kind {
        Kind::Central => barrier,
        Kind::Ranked => barrier.with_tree(tree).with_rank(rank),
        Kind::Unranked => barrier.with_tree(tree),
    }
}

#[test]
fn a_fresh_barrier_has_no_parties() {
    let state = BarrierState::new();
    let barrier = Barrier::new(&state);
    assert_eq!(barrier.parties(), 0);
    assert!(matches!(
        barrier.wait(),
        Err(Error::InvalidParties { parties: 0, .. })
    ));
}

#[test]
fn reset_rejects_impossible_counts() {
    let state = BarrierState::new();
    let tree = BarrierTree::new();
    for barrier in [Barrier::new(&state), Barrier::new(&state).with_tree(&tree)] {
        assert!(matches!(
            barrier.reset(0),
            Err(Error::InvalidParties {
                parties: 0,
                max: MAX_PARTIES
            })
        ));
        assert!(barrier.reset(MAX_PARTIES + 1).is_err());
        barrier.reset(MAX_PARTIES).unwrap();
        assert_eq!(barrier.parties(), MAX_PARTIES);
    }
}

#[test]
fn a_single_party_leads_every_generation() {
    let state = BarrierState::new();
    let barrier = Barrier::new(&state);
    barrier.reset(1).unwrap();
    let before = generation_of(&state);
    for _ in 0..10 {
        assert!(barrier.wait().unwrap().is_leader());
    }
    assert_eq!(generation_of(&state), before + 10);
}

#[test]
fn reset_chooses_a_tree_beyond_four_parties() {
    let state = BarrierState::new();
    let tree = BarrierTree::new();
    let barrier = Barrier::new(&state).with_tree(&tree);
    let leaves = |parties| {
        barrier.reset(parties).unwrap();
        state.leaves.load(Ordering::Relaxed)
    };
    assert_eq!(leaves(2), 0);
    assert_eq!(leaves(4), 0);
    assert_eq!(leaves(5), 2);
    assert_eq!(leaves(16), 4);
    assert_eq!(leaves(64), 16);
    // 16 + 4 + 1 = 21 lines: the whole tree. Beyond, the leaves grow.
    assert_eq!(Shape::choose(64, BarrierTree::NODES).unwrap().lines(), 21);
    let big = leaves(65);
    assert!((2..=16).contains(&big), "{big}");
    assert!(Shape::choose(MAX_PARTIES, BarrierTree::NODES).unwrap().lines() <= BarrierTree::NODES);
    // Without a tree, every count is central.
    Barrier::new(&state).reset(64).unwrap();
    assert_eq!(state.leaves.load(Ordering::Relaxed), 0);
}

#[test]
fn distinct_ranks_fill_every_leaf_exactly() {
    for parties in 1..=300 {
        for leaves in 1..=parties.min(BarrierTree::NODES as u32) {
            let Some(shape) = Shape::new(parties, leaves, usize::MAX) else {
                continue;
            };
            let mut taken = vec![0u32; leaves as usize];
            for rank in 0..parties {
                taken[shape.leaf_of(rank) as usize] += 1;
            }
            for (leaf, &n) in taken.iter().enumerate() {
                assert_eq!(
                    n,
                    shape.leaf_capacity(leaf as u32),
                    "{parties} parties, {leaves} leaves"
                );
            }
        }
    }
}

#[test]
fn shapes_that_do_not_fit_are_refused() {
    assert_eq!(Shape::new(8, 0, 21), None);
    assert_eq!(Shape::new(8, 9, 21), None);
    // 16 leaves need 16 + 4 + 1 lines.
    assert!(Shape::new(64, 16, 21).is_some());
    assert_eq!(Shape::new(64, 16, 20), None);
    assert_eq!(Shape::new(8, 2, 2), None);
    assert_eq!(FAN_IN, 4);
}

fn run_rounds(threads: u32, rounds: usize, policy: SpinPolicy, kind: Kind) {
    let state = BarrierState::new();
    let tree = BarrierTree::new();
    handle(&state, &tree, kind, policy, 0).reset(threads).unwrap();
    let arrivals: Vec<AtomicUsize> = (0..rounds).map(|_| AtomicUsize::new(0)).collect();
    let leaders: Vec<AtomicUsize> = (0..rounds).map(|_| AtomicUsize::new(0)).collect();
    std::thread::scope(|s| {
        for rank in 0..threads {
            let (state, tree, arrivals, leaders) = (&state, &tree, &arrivals, &leaders);
            s.spawn(move || {
                let barrier = handle(state, tree, kind, policy, rank);
                for round in 0..rounds {
                    arrivals[round].fetch_add(1, Ordering::Relaxed);
                    let result = barrier.wait_timeout(Duration::from_secs(60)).unwrap();
                    if result.is_leader() {
                        leaders[round].fetch_add(1, Ordering::Relaxed);
                    }
                    // Relaxed on purpose: the barrier must provide the ordering.
                    assert_eq!(arrivals[round].load(Ordering::Relaxed), threads as usize);
                }
            });
        }
    });
    for leader_count in &leaders {
        assert_eq!(leader_count.load(Ordering::Relaxed), 1);
    }
    assert!(!Barrier::new(&state).with_tree(&tree).is_poisoned());
}

#[test]
fn nobody_passes_early_and_one_leader_per_generation() {
    run_rounds(4, 500, SpinPolicy::Adaptive, Kind::Central);
}

#[test]
fn sleeping_only_barrier_works() {
    run_rounds(3, 300, SpinPolicy::Never, Kind::Central);
}

#[test]
fn oversubscribed_spinning_barrier_works() {
    run_rounds(6, 200, SpinPolicy::Fixed(50), Kind::Central);
}

#[test]
fn a_tree_holds_ranked_threads_together() {
    run_rounds(16, 300, SpinPolicy::Adaptive, Kind::Ranked);
}

#[test]
fn a_tree_holds_unranked_threads_together() {
    run_rounds(9, 300, SpinPolicy::Adaptive, Kind::Unranked);
}

#[test]
fn a_sleeping_tree_wakes_every_level() {
    // 21 parties: six leaves, two inner nodes and the root.
    run_rounds(21, 100, SpinPolicy::Never, Kind::Ranked);
    run_rounds(7, 300, SpinPolicy::Never, Kind::Unranked);
}

#[test]
fn a_tree_with_large_leaves_works() {
    run_rounds(70, 30, SpinPolicy::Fixed(20), Kind::Ranked);
}

#[test]
fn wrong_ranks_cost_time_not_correctness() {
    let state = BarrierState::new();
    let tree = BarrierTree::new();
    Barrier::new(&state).with_tree(&tree).reset(8).unwrap();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                // Everybody claims rank 3 (and rank 3 + parties).
                let barrier = Barrier::with_spin(&state, SpinPolicy::Fixed(100))
                    .with_tree(&tree)
                    .with_rank(11);
                for _ in 0..200 {
                    barrier.wait_timeout(Duration::from_secs(60)).unwrap();
                }
            });
        }
    });
}

#[test]
fn the_generation_wraps_without_poisoning() {
    for kind in [Kind::Central, Kind::Ranked] {
        let state = BarrierState::new();
        let tree = BarrierTree::new();
        // The tag of a node's count wraps at 2^15, the generation at 2^30.
        let reset = handle(&state, &tree, kind, SpinPolicy::Never, 0);
        state.epoch.store(GENERATION_MASK - 3, Ordering::Relaxed);
        reset.reset(6).unwrap();
        assert_eq!(generation_of(&state), GENERATION_MASK - 2);
        std::thread::scope(|s| {
            for rank in 0..6 {
                let (state, tree) = (&state, &tree);
                s.spawn(move || {
                    let barrier = handle(state, tree, kind, SpinPolicy::Never, rank);
                    for _ in 0..6 {
                        barrier.wait().unwrap();
                    }
                });
            }
        });
        assert_eq!(generation_of(&state), 3);
        assert!(!reset.is_poisoned());
    }
}

#[test]
fn arrived_counts_the_waiters() {
    for kind in [Kind::Central, Kind::Ranked, Kind::Unranked] {
        let state = BarrierState::new();
        let tree = BarrierTree::new();
        let supervisor = handle(&state, &tree, kind, SpinPolicy::Never, 0);
        supervisor.reset(9).unwrap();
        std::thread::scope(|s| {
            let waiters: Vec<_> = (0..8)
                .map(|rank| {
                    let (state, tree) = (&state, &tree);
                    s.spawn(move || handle(state, tree, kind, SpinPolicy::Never, rank).wait())
                })
                .collect();
            while supervisor.arrived() < 8 {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_millis(5));
            assert_eq!(supervisor.arrived(), 8, "{kind:?}");
            // The supervisor's diagnosis: the ninth will never come.
            supervisor.poison();
            for waiter in waiters {
                assert!(matches!(waiter.join().unwrap(), Err(Error::BarrierPoisoned)));
            }
        });
    }
}

#[test]
fn poison_releases_every_waiter_and_later_waits_fail_fast() {
    for (kind, parties) in [(Kind::Central, 4), (Kind::Ranked, 12)] {
        let state = BarrierState::new();
        let tree = BarrierTree::new();
        let barrier = handle(&state, &tree, kind, SpinPolicy::Adaptive, 0);
        barrier.reset(parties).unwrap();
        let started = AtomicUsize::new(0);
        std::thread::scope(|s| {
            let waiters: Vec<_> = (1..parties)
                .map(|rank| {
                    let (state, tree, started) = (&state, &tree, &started);
                    s.spawn(move || {
                        started.fetch_add(1, Ordering::Relaxed);
                        handle(state, tree, kind, SpinPolicy::Never, rank).wait()
                    })
                })
                .collect();
            while started.load(Ordering::Relaxed) < parties as usize - 1 {
                std::thread::yield_now();
            }
            barrier.poison();
            for waiter in waiters {
                assert!(matches!(waiter.join().unwrap(), Err(Error::BarrierPoisoned)));
            }
        });
        assert!(barrier.is_poisoned());
        assert!(matches!(barrier.wait(), Err(Error::BarrierPoisoned)));
        barrier.reset(1).unwrap();
        assert!(!barrier.is_poisoned());
        assert!(barrier.wait().unwrap().is_leader());
    }
}

#[test]
fn a_timeout_poisons_the_barrier() {
    for (kind, parties) in [(Kind::Central, 2), (Kind::Ranked, 6)] {
        let state = BarrierState::new();
        let tree = BarrierTree::new();
        let barrier = handle(&state, &tree, kind, SpinPolicy::Fixed(10), 0);
        barrier.reset(parties).unwrap();
        match barrier.wait_timeout(Duration::from_millis(20)) {
            Err(Error::Timeout { op, after }) => {
                assert_eq!(op, "barrier wait");
                assert_eq!(after, Duration::from_millis(20));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(barrier.is_poisoned());
        assert!(matches!(barrier.wait(), Err(Error::BarrierPoisoned)));
    }
}

#[test]
fn a_timeout_releases_the_other_waiters_with_poison() {
    for (kind, parties) in [(Kind::Central, 3), (Kind::Ranked, 8)] {
        let state = BarrierState::new();
        let tree = BarrierTree::new();
        handle(&state, &tree, kind, SpinPolicy::Never, 0)
            .reset(parties)
            .unwrap();
        std::thread::scope(|s| {
            let patient: Vec<_> = (2..parties)
                .map(|rank| {
                    let (state, tree) = (&state, &tree);
                    s.spawn(move || handle(state, tree, kind, SpinPolicy::Never, rank).wait())
                })
                .collect();
            let impatient = s.spawn(|| {
                handle(&state, &tree, kind, SpinPolicy::Never, 1).wait_timeout(Duration::from_millis(30))
            });
            assert!(matches!(impatient.join().unwrap(), Err(Error::Timeout { .. })));
            for waiter in patient {
                assert!(matches!(waiter.join().unwrap(), Err(Error::BarrierPoisoned)));
            }
        });
    }
}

#[test]
fn too_many_callers_poison_instead_of_corrupting() {
    let state = BarrierState::new();
    let barrier = Barrier::new(&state);
    barrier.reset(2).unwrap();
    // Two extra arrivals in one generation: impossible with 2 parties
    // calling once each, so the barrier must refuse.
    state.count.store(2, Ordering::Relaxed);
    assert!(matches!(barrier.wait(), Err(Error::BarrierPoisoned)));
    assert!(barrier.is_poisoned());
}

#[test]
fn too_many_callers_in_a_tree_poison_instead_of_corrupting() {
    let state = BarrierState::new();
    let tree = BarrierTree::new();
    let barrier = Barrier::new(&state).with_tree(&tree).with_spin_for_tests();
    barrier.reset(5).unwrap();
    // Fill every leaf as five arrivals would, without completing (so that
    // the counts stay): the sixth caller finds no place.
    let generation = generation_of(&state);
    let shape = Shape::new(5, 2, BarrierTree::NODES).unwrap();
    assert_eq!(state.leaves.load(Ordering::Relaxed), 2);
    for leaf in 0..2 {
        let full = shape.leaf_capacity(leaf);
        tree.nodes[leaf as usize]
            .count
            .store((generation << 17) | full, Ordering::Relaxed);
    }
    assert!(matches!(barrier.wait(), Err(Error::BarrierPoisoned)));
    assert!(barrier.is_poisoned());
}

#[test]
fn a_handle_without_the_tree_refuses_a_tree_barrier() {
    let state = BarrierState::new();
    let tree = BarrierTree::new();
    Barrier::new(&state).with_tree(&tree).reset(8).unwrap();
    assert_eq!(Barrier::new(&state).arrived(), 0);
    assert!(matches!(Barrier::new(&state).wait(), Err(Error::BarrierPoisoned)));
    assert!(Barrier::new(&state).with_tree(&tree).is_poisoned());
}

impl Barrier<'_> {
    /// A handle that never sleeps long in tests that expect an error.
    fn with_spin_for_tests(self) -> Self {
        Self {
            policy: SpinPolicy::Fixed(10),
            ..self
        }
    }
}

/// The offsets `core/src/sync/README.md` documents.
#[test]
fn node_layout_matches_the_design_note() {
    use std::mem::offset_of;
    assert_eq!(offset_of!(BarrierNode, count), 0);
    assert_eq!(offset_of!(BarrierNode, word), 4);
    assert_eq!(offset_of!(BarrierTree, nodes), 0);
}
