//! One place that decides how compute threads are used.

/// Sets up compute threads for this process and returns how many there are: a rayon pool of
/// `threads` (default: all cores) that runs batches (or prompts) side by side, while candle's
/// kernels run single-threaded inside each (no nested pools fighting over the same cores).
///
/// Call it once, early, before any model runs: candle reads `RAYON_NUM_THREADS` and
/// `CANDLE_NUM_THREADS` on its first matrix product. Later calls keep the first pool.
pub fn configure_threads(threads: Option<usize>) -> usize {
    let n = threads.filter(|&n| n > 0).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    // SAFETY-free but process-wide: set before other threads read them (see above).
    std::env::set_var("RAYON_NUM_THREADS", "1");
    std::env::set_var("CANDLE_NUM_THREADS", "1");
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "0");
    }
    n
}
