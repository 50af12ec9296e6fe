//! Statistical anomaly detectors: EWMA z-score and one-sided CUSUM (Page).
//!
//! Both learn a baseline from the first `warmup` samples (mean and standard
//! deviation by Welford's method) and never trip during warm-up.
//!
//! - **EWMA z-score**: after warm-up, each sample is scored against the
//!   exponentially weighted mean and variance *before* the sample is folded
//!   in: `z = (x - mean) / sd`. The baseline keeps learning from every sample,
//!   including those that trip, so a lasting change of level stops tripping
//!   once the baseline has caught up (a few half-lives).
//! - **CUSUM**: the warm-up mean `mu` and deviation `sigma` are frozen. Each
//!   sample adds `d * (x - mu) / sigma - k` to a running sum clamped at zero
//!   (`d` = +1 for `up`, -1 for `down`); it trips when the sum exceeds `h`, and
//!   the sum restarts from zero after a trip.
//!
//! A baseline with zero deviation (a constant warm-up) scores any change as
//! infinitely unusual, and no change as zero.

use statrs::distribution::{ContinuousCDF, Normal};

crate::levels::named_enum! {
    /// Which way a change must go to count.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Direction {
        Up = "up",
        Down = "down",
        Either = "either",
    }
}

impl Direction {
    /// The signed movement `delta` seen in this direction (positive when it counts).
    #[inline]
    pub fn magnitude(self, delta: f64) -> f64 {
        match self {
            Direction::Up => delta,
            Direction::Down => -delta,
            Direction::Either => delta.abs(),
        }
    }
}

/// EWMA z-score detector parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EwmaParams {
    /// Weight of each new sample in the running mean and variance (from `halflife`).
    pub alpha: f64,
    /// Samples in the half-life the author wrote (kept for display).
    pub halflife: f64,
    /// Samples used to learn the baseline before the detector may trip.
    pub warmup: u32,
    /// Trip when the z-score in `direction` reaches this many standard deviations.
    pub z: f64,
    pub direction: Direction,
}

/// One-sided CUSUM (Page's test) parameters, in units of the baseline standard deviation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CusumParams {
    /// Samples whose mean and standard deviation become the (frozen) baseline.
    pub warmup: u32,
    /// Allowed drift `k`: deviations smaller than this many sd never accumulate.
    pub slack: f64,
    /// Decision threshold `h`: trip when the cumulative sum exceeds this many sd.
    pub threshold: f64,
    /// `up` or `down` (one-sided).
    pub direction: Direction,
}

/// Welford's running mean and variance.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Welford {
    pub count: u32,
    pub mean: f64,
    m2: f64,
}

impl Welford {
    #[inline]
    pub fn add(&mut self, x: f64) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }
    /// Sample variance (n - 1); zero with fewer than two samples.
    pub fn variance(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            self.m2 / (self.count - 1) as f64
        }
    }
}

/// `(x - mean) / sd`, with a zero `sd` giving 0 for no change and ±infinity otherwise.
#[inline]
fn standardise(x: f64, mean: f64, sd: f64) -> f64 {
    let d = x - mean;
    if sd > 0.0 {
        d / sd
    } else if d == 0.0 {
        0.0
    } else {
        d.signum() * f64::INFINITY
    }
}

/// One-sided upper tail probability of a standard normal at `z` (how unusual `z` is).
pub fn tail_probability(z: f64) -> f64 {
    // Normal::new(0, 1) cannot fail: the standard deviation is positive.
    Normal::standard().sf(z)
}

/// What a detector saw in one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    /// The detector's statistic (z-score, or CUSUM sum) when past warm-up.
    pub statistic: Option<f64>,
    /// The baseline mean and standard deviation the sample was scored against.
    pub mean: f64,
    pub sd: f64,
    pub tripped: bool,
}

/// EWMA z-score detector state.
#[derive(Debug, Clone, Default)]
pub struct Ewma {
    warm: Welford,
    mean: f64,
    var: f64,
}

impl Ewma {
    pub fn observe(&mut self, x: f64, p: &EwmaParams) -> Reading {
        if self.warm.count < p.warmup {
            self.warm.add(x);
            self.mean = self.warm.mean;
            self.var = self.warm.variance();
            return Reading {
                statistic: None,
                mean: self.mean,
                sd: self.var.sqrt(),
                tripped: false,
            };
        }
        let sd = self.var.sqrt();
        let z = standardise(x, self.mean, sd);
        let reading = Reading {
            statistic: Some(z),
            mean: self.mean,
            sd,
            tripped: p.direction.magnitude(z) >= p.z,
        };
        let diff = x - self.mean;
        let incr = p.alpha * diff;
        self.mean += incr;
        self.var = (1.0 - p.alpha) * (self.var + diff * incr);
        reading
    }
}

/// CUSUM detector state.
#[derive(Debug, Clone, Default)]
pub struct Cusum {
    warm: Welford,
    sum: f64,
}

impl Cusum {
    pub fn observe(&mut self, x: f64, p: &CusumParams) -> Reading {
        if self.warm.count < p.warmup {
            self.warm.add(x);
            return Reading {
                statistic: None,
                mean: self.warm.mean,
                sd: self.warm.variance().sqrt(),
                tripped: false,
            };
        }
        let mean = self.warm.mean;
        let sd = self.warm.variance().sqrt();
        let sign = if p.direction == Direction::Down {
            -1.0
        } else {
            1.0
        };
        let step = sign * standardise(x, mean, sd) - p.slack;
        self.sum = (self.sum + step).max(0.0);
        let statistic = self.sum;
        let tripped = statistic > p.threshold;
        if tripped {
            self.sum = 0.0;
        }
        Reading {
            statistic: Some(statistic),
            mean,
            sd,
            tripped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ewma(warmup: u32, z: f64) -> EwmaParams {
        EwmaParams {
            alpha: 0.1,
            halflife: 6.6,
            warmup,
            z,
            direction: Direction::Up,
        }
    }

    #[test]
    fn welford_matches_statrs() {
        use statrs::statistics::Statistics;
        let xs = [1.0, 4.0, 2.5, 8.0, -3.0];
        let mut w = Welford::default();
        xs.iter().for_each(|x| w.add(*x));
        assert!((w.mean - xs.mean()).abs() < 1e-12);
        assert!((w.variance() - xs.variance()).abs() < 1e-12);
    }

    #[test]
    fn ewma_never_trips_during_warm_up() {
        let mut d = Ewma::default();
        let p = ewma(3, 1.0);
        for x in [1.0, 100.0, 1e9] {
            let r = d.observe(x, &p);
            assert!(!r.tripped);
            assert!(r.statistic.is_none());
        }
        assert!(d.observe(1e12, &p).tripped);
    }

    #[test]
    fn ewma_trips_on_a_spike_not_on_noise() {
        let mut d = Ewma::default();
        let p = ewma(20, 6.0);
        for i in 0..200 {
            let x = 100.0 + if i % 2 == 0 { 1.0 } else { -1.0 };
            assert!(!d.observe(x, &p).tripped, "sample {i}");
        }
        let r = d.observe(150.0, &p);
        assert!(r.tripped);
        assert!(r.statistic.unwrap() > 6.0);
    }

    #[test]
    fn cusum_accumulates_a_small_persistent_shift() {
        let p = CusumParams {
            warmup: 50,
            slack: 0.5,
            threshold: 5.0,
            direction: Direction::Up,
        };
        let mut d = Cusum::default();
        for i in 0..50 {
            d.observe(10.0 + if i % 2 == 0 { 1.0 } else { -1.0 }, &p);
        }
        // A shift of one standard deviation: each step adds ~0.5.
        let mut tripped_at = None;
        for i in 0..40 {
            if d.observe(11.0, &p).tripped {
                tripped_at = Some(i);
                break;
            }
        }
        let at = tripped_at.expect("cusum should trip on a persistent shift");
        assert!((9..=12).contains(&at), "tripped at {at}");
        // A shift the other way never trips an upper CUSUM.
        for _ in 0..100 {
            assert!(!d.observe(5.0, &p).tripped);
        }
    }

    #[test]
    fn tail_probability_is_the_normal_upper_tail() {
        assert!((tail_probability(0.0) - 0.5).abs() < 1e-12);
        assert!((tail_probability(1.959963984540054) - 0.025).abs() < 1e-9);
    }
}
