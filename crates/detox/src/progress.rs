//! Progress on stderr: an indicatif bar on a terminal, and plain lines where stderr is not one
//! (a log file, CI), where indicatif draws nothing.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::cell::RefCell;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// When a plain line is due: never on a terminal; otherwise each time the work passes
/// another tenth of its total.
pub struct Tenths {
    plain: bool,
    last: AtomicU64,
}

impl Tenths {
    /// For this process's stderr.
    pub fn new() -> Self {
        Self {
            plain: !std::io::stderr().is_terminal(),
            last: AtomicU64::new(0),
        }
    }

    /// Whether plain lines are written at all.
    pub fn plain(&self) -> bool {
        self.plain
    }

    /// Starts counting from `done` of `total`.
    pub fn reset(&self, done: u64, total: u64) {
        self.last.store(tenth(done, total), Ordering::Relaxed);
    }

    /// Whether `done` of `total` passes a tenth not yet reported (it is then reported).
    pub fn passed(&self, done: u64, total: u64) -> bool {
        let t = tenth(done, total);
        self.plain && t > self.last.fetch_max(t, Ordering::Relaxed)
    }
}

/// Which tenth of `total` `done` is in (10 when `total` is 0).
fn tenth(done: u64, total: u64) -> u64 {
    (done * 10).checked_div(total).unwrap_or(10)
}

/// A bar drawn with `template` (indicatif's syntax) on stderr.
pub fn bar(len: Option<u64>, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// A bar over named stages (`stage: done/total`).
pub struct StageBar {
    bar: ProgressBar,
    tenths: Tenths,
    /// The stage the plain lines are on, and when it started.
    stage: RefCell<(String, Instant)>,
}

impl StageBar {
    /// A bar drawn with `template` (indicatif's syntax; `{msg}` is the stage).
    pub fn new(template: &str) -> Self {
        Self {
            bar: bar(None, template),
            tenths: Tenths::new(),
            stage: RefCell::new((String::new(), Instant::now())),
        }
    }

    /// `stage` is at `done` of `total`.
    pub fn update(&self, stage: &str, done: usize, total: usize) {
        if self.bar.message() != stage {
            self.bar.set_message(stage.to_string());
            self.bar.reset_eta();
        }
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        if !self.tenths.plain() {
            return;
        }
        let (done, total) = (done as u64, total as u64);
        let mut s = self.stage.borrow_mut();
        if s.0 != stage {
            *s = (stage.to_string(), Instant::now());
            self.tenths.reset(done, total);
            eprintln!("detox: {stage}: {done}/{total}");
        } else if self.tenths.passed(done, total) {
            eprintln!(
                "detox: {stage}: {done}/{total} ({:.0}s)",
                s.1.elapsed().as_secs_f64()
            );
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
