use quire_consensus::Behaviour;
use quire_consensus::sim::{Choice, Sim, SimConfig};

#[test]
fn smoke() {
    for seed in 0..3 {
        let cfg = SimConfig::new(4, 0, Choice::One(Behaviour::Honest), seed).quiet();
        let t = std::time::Instant::now();
        let r = Sim::new(cfg).run();
        eprintln!(
            "seed {seed}: {:?} heights {:?} view {} vc {} msgs {} steps {} in {:?}",
            r.violation,
            r.heights,
            r.max_view,
            r.view_changes,
            r.messages,
            r.steps,
            t.elapsed()
        );
    }
    for seed in 0..3 {
        let cfg = SimConfig::new(4, 1, Choice::Mixed, seed);
        let t = std::time::Instant::now();
        let r = Sim::new(cfg).run();
        eprintln!(
            "seed {seed}: {:?} heights {:?} view {} vc {} streak {} faulty {:?} msgs {} in {:?}",
            r.violation,
            r.heights,
            r.max_view,
            r.view_changes,
            r.view_change_streak_max,
            r.faulty,
            r.messages,
            t.elapsed()
        );
    }
}
