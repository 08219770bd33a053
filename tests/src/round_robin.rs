//! A TCP load balancer for tests: each new connection goes to the next backend in turn, as a
//! Kubernetes Service spreads connections over pods. Clients that open one connection per
//! request (see `Browser::one_connection_per_request`) therefore alternate between replicas.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};

pub struct RoundRobin {
    pub addr: SocketAddr,
    /// Connections sent to each backend.
    pub counts: Arc<Vec<AtomicUsize>>,
    task: tokio::task::JoinHandle<()>,
}

impl RoundRobin {
    /// Listens on `listen` (bind it first with [`crate::sidecar::public_listener`] so the
    /// gateways' public URL can name it).
    pub async fn start(listen: SocketAddr, backends: Vec<SocketAddr>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let counts: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let next = Arc::new(AtomicUsize::new(0));
        let task = {
            let counts = counts.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let i = next.fetch_add(1, Ordering::Relaxed) % backends.len();
                    counts[i].fetch_add(1, Ordering::Relaxed);
                    let backend = backends[i];
                    tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(backend).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            })
        };
        Ok(Self { addr, counts, task })
    }

    pub fn counts(&self) -> Vec<usize> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
