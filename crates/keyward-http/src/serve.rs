//! Serving the router over HTTP or HTTPS until a shutdown signal, then draining connections.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
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
}

/// Serves until `shutdown` completes, then stops accepting and drains in-flight requests.
pub async fn serve(
    router: Router,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    match config.tls {
        None => {
            let service = router.into_make_service_with_connect_info::<SocketAddr>();
            let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
            let signal = async move {
                shutdown.await;
                let _ = stopping_tx.send(());
            };
            let server = axum::serve(config.listener, service).with_graceful_shutdown(signal).into_future();
            tokio::pin!(server);
            tokio::select! {
                res = &mut server => return res.context("HTTP server failed"),
                _ = stopping_rx => (),
            }
            // Draining: in-flight requests get `drain_timeout`, then the server stops regardless.
            match tokio::time::timeout(config.drain_timeout, server).await {
                Ok(res) => res.context("HTTP server failed"),
                Err(_) => {
                    tracing::warn!("some requests did not finish within the drain timeout");
                    Ok(())
                }
            }
        }
        Some(files) => serve_tls(router, config.listener, &files, config.drain_timeout, shutdown).await,
    }
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

async fn serve_tls(
    router: Router,
    listener: TcpListener,
    files: &TlsFiles,
    drain_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(files)?));
    let graceful = GracefulShutdown::new();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let builder = Builder::new(TokioExecutor::new());
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
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                Ok(Ok(it)) => it,
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, %peer, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = router
                .map_request(move |mut request: axum::extract::Request<hyper::body::Incoming>| {
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
            let connection =
                builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
            if let Err(err) = watcher.watch(connection.into_owned()).await {
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
    let drained = tokio::time::timeout(drain_timeout, async {
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
