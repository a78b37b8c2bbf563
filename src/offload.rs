//! CPU-bound work (polars) on a thread of its own, awaited from async code: it must not hold
//! the async runtime's threads, and outside any runtime's context polars never tries tokio's
//! `block_in_place` (which panics on a current-thread runtime, as `spawn_blocking` threads
//! would let it).

/// Runs `work` on a new thread and waits for its result; `None` if the thread stopped without
/// one (it panicked).
pub async fn on_own_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    rx.await.ok()
}

#[cfg(test)]
mod tests {
    use super::on_own_thread;

    #[tokio::test(flavor = "current_thread")]
    async fn a_result_comes_back_and_a_panic_is_none() {
        assert_eq!(on_own_thread(|| 6 * 7).await, Some(42));
        let panicked: Option<u8> = on_own_thread(|| panic!("on purpose")).await;
        assert_eq!(panicked, None);
    }
}
