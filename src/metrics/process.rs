//! The process's own metrics (CPU, memory, descriptors, threads, start time),
//! as the prometheus crate's collector reports them, except that
//! `process_cpu_seconds_total` counts to the clock tick (10 ms) where the
//! crate's counts whole seconds: a gateway that had used 0.21 s showed 0, and
//! a rate over a few minutes moved in steps of a second.

use prometheus::core::{Collector, Desc};
use prometheus::process_collector::ProcessCollector;
use prometheus::{Counter, Opts, proto};

const CPU: &str = "process_cpu_seconds_total";

pub struct ProcessMetrics {
    inner: ProcessCollector,
    cpu: Counter,
}

impl ProcessMetrics {
    pub fn for_self() -> Self {
        // The same name and help as the crate's, whose description is the one registered.
        let cpu = Counter::with_opts(Opts::new(CPU, "Total user and system CPU time spent in seconds."))
            .expect("static metric definition");
        ProcessMetrics { inner: ProcessCollector::for_self(), cpu }
    }
}

/// User and system CPU time of this process so far, in seconds (10 ms steps).
pub fn cpu_seconds() -> Option<f64> {
    let stat = procfs::process::Process::myself().and_then(|p| p.stat()).ok()?;
    Some((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.desc()
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let mut families: Vec<proto::MetricFamily> =
            self.inner.collect().into_iter().filter(|f| f.name() != CPU).collect();
        if let Some(total) = cpu_seconds() {
            // A counter only goes up; two scrapes at once may race to move it.
            let delta = total - self.cpu.get();
            if delta > 0.0 {
                self.cpu.inc_by(delta);
            }
            families.extend(self.cpu.collect());
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // burns real CPU time
    fn cpu_time_is_reported_below_the_second() {
        // Burn a little CPU so there is something to count.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let m = ProcessMetrics::for_self();
        let before = cpu_seconds().unwrap();
        let families = m.collect();
        let after = cpu_seconds().unwrap();
        let cpu = families.iter().find(|f| f.name() == CPU).expect("the CPU family");
        assert_eq!(families.iter().filter(|f| f.name() == CPU).count(), 1);
        let value = cpu.get_metric()[0].get_counter().get_value();
        assert!(before <= value && value <= after, "{before} <= {value} <= {after}");
        assert!(value.fract() != 0.0 || value >= 1.0, "{value}");
        assert!(families.iter().any(|f| f.name() == "process_resident_memory_bytes"));
    }
}
