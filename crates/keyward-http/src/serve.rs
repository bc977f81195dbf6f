//! Serving the router over HTTP or HTTPS until a shutdown signal, then draining connections.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// PEM files for HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How to serve.
#[derive(Debug)]
pub struct ServeConfig {
    pub listener: TcpListener,
    pub tls: Option<TlsFiles>,
    /// How long to wait for in-flight requests after the shutdown signal.
    pub drain_timeout: Duration,
    /// How long a client may take to send a request's headers, and how long an HTTP/1.1
    /// connection may sit idle between requests, before it is closed (slow-loris).
    pub header_read_timeout: Duration,
}

impl ServeConfig {
    /// The defaults: a 10 s drain and a 10 s header-read and idle timeout.
    pub fn new(listener: TcpListener, tls: Option<TlsFiles>) -> ServeConfig {
        ServeConfig {
            listener,
            tls,
            drain_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown` completes, then stops accepting and drains in-flight requests.
///
/// Plain HTTP is HTTP/1.1; HTTPS offers HTTP/2 and HTTP/1.1 by ALPN. Every HTTP/1.1 connection
/// has a header-read timeout that also bounds the idle time between requests; an HTTP/2
/// connection is pinged and closed when its peer stops answering.
pub async fn serve(
    router: crate::HttpService,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let acceptor = match &config.tls {
        Some(files) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(files)?))),
        None => None,
    };
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1.timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout).keep_alive(true);
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(config.header_read_timeout))
        .keep_alive_timeout(config.header_read_timeout)
        .max_concurrent_streams(100);
    let listener = config.listener;
    let graceful = GracefulShutdown::new();
    let in_flight = Arc::new(AtomicUsize::new(0));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(it) => it,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let service = service_for(router.clone(), peer, in_flight.clone());
        let (http1, http2) = (http1.clone(), http2.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let result = match acceptor {
                None => watcher.watch(http1.serve_connection(TokioIo::new(stream), service)).await,
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(it)) => it,
                        Ok(Err(err)) => {
                            tracing::debug!(error = %err, %peer, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                        watcher.watch(http2.serve_connection(TokioIo::new(stream), service)).await
                    } else {
                        watcher.watch(http1.serve_connection(TokioIo::new(stream), service)).await
                    }
                }
            };
            if let Err(err) = result {
                tracing::debug!(error = %err, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // Tell every connection to finish (GOAWAY for HTTP/2, no more keep-alive for HTTP/1.1), then
    // stop once every in-flight request is answered: idle keep-alive connections (HTTP/2 clients
    // hold them open after GOAWAY) must not hold the shutdown, and nothing waits past the timeout.
    let closing = graceful.shutdown();
    tokio::pin!(closing);
    let requests_done = async {
        while in_flight.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let drained = tokio::time::timeout(config.drain_timeout, async {
        tokio::select! {
            biased;
            () = &mut closing => (),
            () = requests_done => (),
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some requests did not finish within the drain timeout");
    }
    Ok(())
}

/// The router as a hyper service for one connection: the peer's address as `ConnectInfo`, and
/// each request counted while in flight (for draining).
fn service_for(
    router: crate::HttpService,
    peer: SocketAddr,
    in_flight: Arc<AtomicUsize>,
) -> TowerToHyperService<
    impl tower::Service<
        axum::extract::Request<hyper::body::Incoming>,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
    > + Clone
    + Send
    + 'static,
> {
    let service =
        tower::ServiceExt::map_request(router, move |request: axum::extract::Request<hyper::body::Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        })
        .map_future(move |response| {
            let in_flight = in_flight.clone();
            async move {
                in_flight.fetch_add(1, Ordering::SeqCst);
                let res = response.await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                res
            }
        });
    TowerToHyperService::new(service)
}

fn tls_config(files: &TlsFiles) -> anyhow::Result<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read the TLS certificate {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate; give a PEM file with BEGIN CERTIFICATE blocks", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read a PEM private key from {}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
