//! A real mnemo member run inside the test process (the server's own `serve`, on free
//! 127.0.0.1 ports and a temporary data directory), driven over gRPC, then stopped so
//! the tools can read the files it wrote.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use mnemo::config::Config;
use mnemo::server::ServerOptions;
use mnemo_proto::etcdserverpb::kv_client::KvClient;
use mnemo_proto::etcdserverpb::lease_client::LeaseClient;
use mnemo_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use tonic::transport::Channel;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// A member serving from `data_dir` until [`Member::stop`].
pub struct Member {
    pub data_dir: PathBuf,
    pub client_url: String,
    /// The command line it was started with; restart with the same one.
    pub args: Vec<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Member {
    /// Starts a member named `default` on `data_dir` with etcd's flags `extra` added.
    pub async fn start(data_dir: &Path, extra: &[String]) -> Member {
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut args = vec![
            "mnemo".to_string(),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
        ];
        args.extend(extra.iter().cloned());
        Self::start_with(data_dir, args).await
    }

    /// Starts a member from a whole command line (`mnemo` first).
    pub async fn start_with(data_dir: &Path, args: Vec<String>) -> Member {
        let config = Config::parse_from(args.clone(), std::iter::empty()).expect("valid flags");
        let client_url = config
            .advertise_client_urls
            .first()
            .map(|u| u.to_string().trim_end_matches('/').to_string())
            .expect("a client URL");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = ServerOptions::from_config(&config);
        let listeners = mnemo::server::client_listeners(&config).expect("client listeners");
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            mnemo::server::serve(options, listeners, shutdown)
                .await
                .expect("the member runs and stops cleanly");
        });
        let m = Member {
            data_dir: data_dir.to_path_buf(),
            client_url,
            args,
            stop: Some(stop),
            task: Some(task),
        };
        m.wait_ready().await;
        m
    }

    /// A handle that names an endpoint but runs nothing.
    pub fn unstarted(client_url: &str) -> Member {
        Member {
            data_dir: PathBuf::new(),
            client_url: client_url.to_string(),
            args: vec![],
            stop: None,
            task: None,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(self.client_url.clone())
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }

    async fn wait_ready(&self) {
        for _ in 0..300 {
            if let Ok(c) = Channel::from_shared(self.client_url.clone())
                .unwrap()
                .connect()
                .await
            {
                let mut m = MaintenanceClient::new(c);
                if m.status(mnemo_proto::etcdserverpb::StatusRequest {})
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("member on {} never became ready", self.client_url);
    }

    pub async fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel().await)
    }

    /// The member's current revision (from a range's response header).
    pub async fn revision(&self) -> i64 {
        self.kv()
            .await
            .range(mnemo_proto::etcdserverpb::RangeRequest {
                key: b"\0".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .header
            .unwrap()
            .revision
    }

    pub async fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel().await)
    }

    pub async fn maintenance(&self) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel().await).max_decoding_message_size(usize::MAX)
    }

    /// Stops the member (as SIGTERM would) and waits until it has.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("member task");
        }
    }
}
