//! Unit tests of a daemon session's runner.

use crate::api::ApiClient;
use crate::secret::Secret;
use crate::session::{Supervisor, SupervisorConfig};

mod size_tests {
    use super::super::*;
    use super::*;

    /// Every idle session holds a runner's task for as long as it lives: waits that are
    /// rare (appends, state records, the end) are boxed, and Items wait boxed in the
    /// channel, so the task is the size of its loop (it was 2 KiB).
    #[tokio::test]
    async fn an_idle_runner_stays_small() {
        let tmp = tempfile::tempdir().unwrap();
        let journal = Journal::open(tmp.path(), Default::default()).unwrap();
        let endpoint = crate::api::Endpoint::from_url("http://127.0.0.1:9").unwrap();
        let api = ApiClient::builder(endpoint).build().unwrap();
        let handle = Supervisor::spawn_resumed(api, Secret::new("t"), SupervisorConfig::default(), None);
        let (items, task) = handle.into_parts();
        let runner = Runner {
            name: "s".into(),
            journal,
            progress: Arc::new(Mutex::new(Progress::starting())),
            receipts: None,
            receipts_after: None,
            sent: Default::default(),
        };
        let run = runner.run(items, task, Arc::new(tokio::sync::Notify::new()));
        let size = std::mem::size_of_val(&run);
        eprintln!("the runner task: {size} bytes");
        assert!(size <= 1024, "{size} bytes");
    }
}
