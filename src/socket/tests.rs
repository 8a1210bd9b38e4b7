//! Unit tests of the socket task: its heartbeat tick grid and the size of an idle
//! socket's task.

mod tick_tests {
    use super::super::*;

    /// Sockets opened at different moments tick on one grid, never later than a period
    /// after they start (so half-open detection keeps its bound) and at most one grid
    /// step (250 ms at the default 10 s) earlier.
    #[test]
    fn first_ticks_share_a_grid_and_never_come_late() {
        let period = Duration::from_secs(10);
        let grid = Duration::from_millis(250);
        let base = Instant::now();
        let ticks: Vec<Instant> = [0u64, 1, 37, 249, 250, 251, 4_999, 9_876]
            .iter()
            .map(|ms| {
                let now = base + Duration::from_millis(*ms);
                let tick = first_tick(now, period);
                assert!(tick <= now + period, "never late");
                assert!(tick > now + period - grid, "at most a grid step early");
                tick
            })
            .collect();
        for t in &ticks {
            let apart = t.saturating_duration_since(ticks[0]) + ticks[0].saturating_duration_since(*t);
            assert_eq!(apart.as_nanos() % grid.as_nanos(), 0, "on one grid");
        }
        // Short periods get a finer grid (an eighth of the period).
        let short = Duration::from_millis(80);
        let tick = first_tick(base, short);
        assert!(tick <= base + short && tick > base + short - short / 8);
    }
}

mod size_tests {
    use super::super::*;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::WebSocketStream;

    /// Every idle chat holds its socket's task for hours: the rare waits (a full
    /// channel, the close handshake, the heartbeat's send) are boxed, the state is held
    /// once and a TLS connection is boxed in the stream, so the task stays small (it
    /// was 4.2 KiB).
    #[tokio::test]
    async fn an_idle_socket_task_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let ws = WebSocketStream::from_raw_socket(dial::Stream::plain(tcp), Role::Client, None).await;
        let (tx, _rx) = mpsc::channel(1);
        let (_close, close_rx) = oneshot::channel();
        let task = SocketTask {
            id: 0,
            ws,
            tx,
            cfg: SocketConfig::default(),
            malformed: 0,
        };
        let run = task.run(close_rx, VecDeque::new());
        let size = std::mem::size_of_val(&run);
        eprintln!("the socket task: {size} bytes");
        assert!(size <= 1280, "{size} bytes");
    }
}
