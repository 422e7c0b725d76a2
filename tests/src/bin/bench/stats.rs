//! One figure of the report: Gatehouse's samples, the baseline's from the same run, the ratio
//! between their medians and the goal it is held to.

use std::fmt::Write as _;

/// Repeated measurements of one quantity.
#[derive(Debug, Clone, Default)]
pub struct Sample(pub Vec<f64>);

impl Sample {
    pub fn one(value: f64) -> Self {
        Self(vec![value])
    }

    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => f64::midpoint(v[n / 2 - 1], v[n / 2]),
        }
    }

    /// `median (min–max, n=N)`, or just the value for a single run.
    pub fn show(&self, unit: &str) -> String {
        let v = self.sorted();
        let mut out = format!("{}{unit}", fmt_num(self.median()));
        if v.len() > 1 {
            let _ = write!(
                out,
                " ({}–{}, n={})",
                fmt_num(v[0]),
                fmt_num(v[v.len() - 1]),
                v.len()
            );
        }
        out
    }
}

pub fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if !x.is_finite() {
        "—".into()
    } else if a >= 1000.0 {
        group_thousands(x.round())
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 0.1 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn group_thousands(x: f64) -> String {
    let digits = format!("{}", x.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// Gatehouse / baseline must reach this (higher is better).
    RatioAtLeast(f64),
    /// Gatehouse / baseline must stay at or under this (lower is better: latency, CPU time).
    RatioAtMost(f64),
    AtLeast(f64),
    AtMost(f64),
    /// Shown for context; no goal.
    None,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub id: &'static str,
    pub what: String,
    pub unit: &'static str,
    pub ours: Sample,
    pub baseline: Option<(String, Sample)>,
    pub goal: Goal,
    pub note: String,
    /// A difference of two measurements (work above a do-nothing worker): below the noise it
    /// comes out negative, which is still a figure.
    pub signed: bool,
}

impl Row {
    pub fn new(
        id: &'static str,
        what: impl Into<String>,
        unit: &'static str,
        ours: Sample,
    ) -> Self {
        Self {
            id,
            what: what.into(),
            unit,
            ours,
            baseline: None,
            goal: Goal::None,
            note: String::new(),
            signed: false,
        }
    }

    /// Marks a row whose figures are differences and may be negative (see [`Row::signed`]).
    pub const fn signed(mut self) -> Self {
        self.signed = true;
        self
    }

    pub fn against(mut self, name: impl Into<String>, baseline: Sample) -> Self {
        self.baseline = Some((name.into(), baseline));
        self
    }

    pub fn goal(mut self, goal: Goal) -> Self {
        self.goal = goal;
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    pub fn ratio(&self) -> Option<f64> {
        let (_, base) = self.baseline.as_ref()?;
        Some(self.ours.median() / base.median())
    }

    pub fn met(&self) -> Option<bool> {
        let ours = self.ours.median();
        match self.goal {
            Goal::RatioAtLeast(x) => self.ratio().map(|r| r >= x),
            Goal::RatioAtMost(x) => self.ratio().map(|r| r <= x),
            Goal::AtLeast(x) => Some(ours >= x),
            Goal::AtMost(x) => Some(ours <= x),
            Goal::None => None,
        }
    }

    pub fn goal_text(&self) -> String {
        match self.goal {
            Goal::RatioAtLeast(x) => format!("≥ {x}×"),
            Goal::RatioAtMost(x) => format!("≤ {x}×"),
            Goal::AtLeast(x) => format!("≥ {}{}", fmt_num(x), self.unit),
            Goal::AtMost(x) => format!("≤ {}{}", fmt_num(x), self.unit),
            Goal::None => "—".into(),
        }
    }

    /// Every figure is a finite, positive measurement (what the smoke mode insists on).
    pub fn is_measured(&self) -> bool {
        let ok = |s: &Sample| {
            !s.0.is_empty()
                && s.0
                    .iter()
                    .all(|v| v.is_finite() && (self.signed || *v >= 0.0))
        };
        ok(&self.ours) && self.baseline.as_ref().is_none_or(|(_, b)| ok(b))
    }
}
