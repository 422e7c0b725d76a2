//! Stopping a replica without failing requests. On SIGTERM (what Kubernetes, systemd and
//! `docker stop` send) `/health/ready` answers 503 `draining` while the replica keeps serving
//! for `drain_secs`, every response saying `Connection: close` so that pooled clients reconnect
//! through the balancer; then Rocket's graceful shutdown (`shutdown.grace`, `shutdown.mercy`)
//! finishes what is in flight. A second SIGTERM, or SIGINT (Ctrl-C, which Rocket handles),
//! ends the drain and starts that shutdown at once. Once it has started, further SIGTERMs are
//! taken and ignored (the handler stays installed): the shutdown is bounded by grace and mercy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rocket::fairing::{AdHoc, Fairing, Info, Kind};
use rocket::http::Header;
use rocket::{Request, Response, Shutdown};

/// Whether this replica is draining: set once, never cleared.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
}

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn begin(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// Manages the [`Drain`] (readiness reads it) and closes each connection once draining.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Drain", |rocket| async {
        let drain = Arc::new(Drain::default());
        rocket
            .manage(Arc::clone(&drain))
            .attach(CloseWhileDraining(drain))
    })
}

struct CloseWhileDraining(Arc<Drain>);

#[rocket::async_trait]
impl Fairing for CloseWhileDraining {
    fn info(&self) -> Info {
        Info {
            name: "Connection: close while draining",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, _: &'r Request<'_>, response: &mut Response<'r>) {
        if self.0.is_draining() {
            response.set_header(Header::new("Connection", "close"));
        }
    }
}

/// Drains on SIGTERM, then shuts down. Only `serve` calls this: a test binary that builds the
/// issuer in-process must keep SIGTERM's default action. Rocket's own signal handling leaves
/// SIGTERM alone (`shutdown.signals` defaults to none here: `config::defaults`).
pub fn shut_down_on_sigterm(drain: Arc<Drain>, drain_for: Duration, shutdown: Shutdown) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!(error = %e, "cannot handle SIGTERM: it will stop the issuer without a drain");
            return;
        }
    };
    tokio::spawn(async move {
        if term.recv().await.is_none() {
            return;
        }
        drain.begin();
        // At info: every deploy drains, and nothing here asks anyone to act.
        tracing::info!(
            drain_secs = drain_for.as_secs(),
            "SIGTERM: draining (readiness answers 503 while requests are still served), then \
             shutting down; a second SIGTERM ends the drain"
        );
        tokio::select! {
            () = tokio::time::sleep(drain_for) => {}
            _ = term.recv() => tracing::info!("second SIGTERM: the drain ends"),
        }
        tracing::info!("drain over: shutting down");
        shutdown.notify();
    });
}
