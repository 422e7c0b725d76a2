//! A TCP proxy with a switch, standing between the issuer and PostgreSQL: cutting it kills every
//! open connection and refuses new ones, which is what the issuer sees when the database goes
//! away; restoring it is the database coming back. Freezing it keeps every connection open and
//! carries nothing more, as a network that drops packets does (a failover's old address): no
//! answer, and no error either. The real server is never stopped, so other tests sharing it are
//! not disturbed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    frozen: watch::Sender<bool>,
    counter: Arc<AtomicU64>,
}

impl Proxy {
    pub async fn start(target: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let (generation, watcher) = watch::channel(0);
        let (frozen, freeze_watcher) = watch::channel(false);
        let gate = Arc::clone(&up);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !gate.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = watcher.clone();
                // Only cuts after this connection opened count.
                cut.borrow_and_update();
                let mut freeze = freeze_watcher.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                        _ = cut.changed() => return,
                        _ = freeze.wait_for(|frozen| *frozen) => {}
                    }
                    // Frozen: both sockets held open, nothing carried, until a cut.
                    let _held = (inbound, outbound);
                    let _ = cut.changed().await;
                });
            }
        });
        Self {
            port,
            up,
            generation,
            frozen,
            counter: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The network to the database drops every packet: connections stay open, carrying
    /// nothing, and new ones are accepted and carry nothing either (their task freezes at once).
    pub fn freeze(&self) {
        let _ = self.frozen.send(true);
    }

    /// The database "goes away": open connections die, new ones are refused.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let next = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.generation.send(next);
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
