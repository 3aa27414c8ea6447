//! Listeners and the lifetime of the whole server: accept loops, the connection limit, shutdown that
//! waits for every connection task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::broker::Broker;

/// A running server. Dropping it does not stop it: call [`Server::shutdown`].
#[derive(Debug)]
pub struct Server {
    pub broker: Arc<Broker>,
    /// The bound addresses, in listener order (port 0 resolved).
    pub local_addrs: Vec<SocketAddr>,
    /// A watch channel: every task observes the one shutdown flag.
    shutdown: watch::Sender<bool>,
    /// Each task holds a sender; when all are gone, `recv` returns `None` and the server is done.
    done: mpsc::Receiver<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds every address and starts accepting. Each address comes with the index of the configured
    /// listener it belongs to (for per-listener security). `max_connections` bounds concurrent clients.
    pub async fn start(
        broker: Arc<Broker>,
        addrs: &[(SocketAddr, usize)],
        max_connections: Option<usize>,
    ) -> std::io::Result<Server> {
        let mut listeners = Vec::new();
        for &(addr, index) in addrs {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            listeners.push((listener, index));
        }
        Ok(Server::from_listeners(broker, listeners, max_connections))
    }

    /// Starts accepting on already bound listeners.
    pub fn from_listeners(
        broker: Arc<Broker>,
        listeners: Vec<(TcpListener, usize)>,
        max_connections: Option<usize>,
    ) -> Server {
        let (shutdown, _) = watch::channel(false);
        let (done_tx, done) = mpsc::channel(1);
        let limit = Arc::new(Semaphore::new(max_connections.unwrap_or(Semaphore::MAX_PERMITS)));
        let mut local_addrs = Vec::new();
        let mut tasks = Vec::new();
        for (listener, index) in listeners {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!("listening on {addr}");
                local_addrs.push(addr);
            }
            let accept =
                accept_loop(broker.clone(), listener, index, limit.clone(), shutdown.subscribe(), done_tx.clone());
            tasks.push(tokio::spawn(accept));
        }
        tasks.push(tokio::spawn(crate::sys::run(broker.clone(), shutdown.subscribe(), done_tx)));
        Server { broker, local_addrs, shutdown, done, tasks }
    }

    /// Stops accepting, tells every connection to close (5.0: DISCONNECT 0x8B), and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.done.recv()).await;
    }
}

async fn accept_loop(
    broker: Arc<Broker>,
    listener: TcpListener,
    index: usize,
    limit: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: log and keep serving the others.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: max_connections reached");
            continue;
        };
        spawn_connection(broker.clone(), stream, (peer, index), shutdown.clone(), done.clone(), permit);
    }
}

fn spawn_connection(
    broker: Arc<Broker>,
    stream: TcpStream,
    (peer, index): (SocketAddr, usize),
    shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    tokio::spawn(async move {
        crate::connection::serve(broker, stream, peer, index, shutdown).await;
        drop(permit);
        drop(done);
    });
}
