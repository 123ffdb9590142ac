//! Progress on stderr: an indicatif bar on a terminal, and plain lines where stderr is not one
//! (a log file, CI), where indicatif draws nothing.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::cell::RefCell;
use std::io::IsTerminal;
use std::time::Instant;

/// A bar over named stages (`stage: done/total`).
pub struct StageBar {
    bar: ProgressBar,
    plain: Option<RefCell<Plain>>,
}

/// What the plain lines have said so far.
struct Plain {
    stage: String,
    /// The last tenth of the stage a line was written for.
    tenth: usize,
    started: Instant,
}

impl StageBar {
    /// A bar drawn with `template` (indicatif's syntax; `{msg}` is the stage).
    pub fn new(template: &str) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let plain = (!std::io::stderr().is_terminal()).then(|| {
            RefCell::new(Plain {
                stage: String::new(),
                tenth: 0,
                started: Instant::now(),
            })
        });
        Self { bar, plain }
    }

    /// `stage` is at `done` of `total`.
    pub fn update(&self, stage: &str, done: usize, total: usize) {
        if self.bar.message() != stage {
            self.bar.set_message(stage.to_string());
            self.bar.reset_eta();
        }
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        if let Some(p) = &self.plain {
            let mut p = p.borrow_mut();
            let tenth = (done * 10).checked_div(total).unwrap_or(10);
            if p.stage != stage {
                p.stage = stage.to_string();
                p.tenth = tenth;
                p.started = Instant::now();
                eprintln!("detox: {stage}: {done}/{total}");
            } else if tenth > p.tenth {
                p.tenth = tenth;
                eprintln!(
                    "detox: {stage}: {done}/{total} ({:.0}s)",
                    p.started.elapsed().as_secs_f64()
                );
            }
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
