//! The HTTP server: otpd's routes on actix-http, assembled here rather than by actix-web's
//! `HttpServer` so that the framework's own refusals get the one error shape. A request
//! with `Expect: 100-continue` that declares a body over the limit gets 413 at once, not
//! `100 Continue` first; the framework's bodiless 400, 408 and 431 get their JSON body
//! (`framework_errors`).

use actix_http::{HttpMessage, HttpService, Protocol, Request, Response};
use actix_server::{GracefulShutdownSignal, Server, ServerBuilder};
use actix_service::{fn_service, map_config, ServiceFactoryExt};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{AppConfig, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, Error, ResponseError};
use std::net::TcpListener;
use std::time::Duration;
use tokio::net::TcpStream;

use super::extract::refuse_declared_oversize_head;
use super::framework_errors::JsonRefusals;

/// How long a client may take to send a request's headers, and an idle connection stays
/// (actix-web's defaults).
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How long a client of otpd should keep an unused pooled connection: well under both
/// timeouts above. A connection kept longer may be answered 408 (never used) or closed (idle)
/// by otpd just as the client sends a request on it, and a POST is not retried.
pub const CLIENT_POOL_IDLE: Duration = Duration::from_secs(2);
/// How long a connection answered before its body was read may drain that body, so the
/// client reads the answer rather than a reset (actix-web's default).
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What an `App<T>` needs of its `T` to be served: the service factory actix-web's routes
/// and middleware make, answering with bodies of type `B`.
pub trait AppServices<B>:
    ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<B>,
        Error = Error,
        InitError = (),
    > + 'static
{
}

impl<T, B> AppServices<B> for T where
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = Error,
            InitError = (),
        > + 'static
{
}

/// Serves the app `make_app` builds (one per worker) on `listener`, over TLS when `tls`.
pub fn serve<F, T, B>(
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    workers: usize,
    make_app: F,
) -> std::io::Result<Server>
where
    F: Fn() -> App<T> + Send + Clone + 'static,
    T: AppServices<B>,
    B: MessageBody + 'static,
{
    let builder = Server::build().workers(workers);
    let shutdown = builder.graceful_shutdown_signal();
    let builder: ServerBuilder = match tls {
        None => builder.listen("otpd-http", listener, move || {
            fn_service(|io: TcpStream| async move {
                let peer = io.peer_addr().ok();
                Ok::<_, actix_http::error::DispatchError>((
                    JsonRefusals::new(io),
                    Protocol::Http1,
                    peer,
                ))
            })
            .and_then(http_service(make_app.clone(), shutdown.clone()))
        })?,
        Some(mut config) => {
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let acceptor = Acceptor::new(config);
            builder.listen("otpd-https", listener, move || {
                acceptor
                    .clone()
                    .map_init_err(|_| ())
                    .map_err(|refused| {
                        let handshake = format!("the TLS handshake failed: {refused:?}");
                        actix_http::error::DispatchError::Io(std::io::Error::other(handshake))
                    })
                    .and_then(|io: TlsStream<TcpStream>| async move {
                        let peer = io.get_ref().0.peer_addr().ok();
                        Ok((JsonRefusals::new(io), Protocol::Http1, peer))
                    })
                    .and_then(http_service(make_app.clone(), shutdown.clone()))
            })?
        }
    };
    Ok(builder.run())
}

/// actix-http with otpd's timeouts and its `Expect` check, serving the app.
fn http_service<F, T, B, S>(
    make_app: F,
    shutdown: GracefulShutdownSignal,
) -> impl ServiceFactory<
    (JsonRefusals<S>, Protocol, Option<std::net::SocketAddr>),
    Config = (),
    Response = (),
    Error = actix_http::error::DispatchError,
    InitError = (),
>
where
    F: Fn() -> App<T>,
    T: AppServices<B>,
    B: MessageBody + 'static,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    HttpService::build()
        .keep_alive(KEEP_ALIVE)
        .client_request_timeout(HEAD_TIMEOUT)
        .client_disconnect_timeout(DISCONNECT_TIMEOUT)
        .graceful_shutdown_signal(move || {
            let shutdown = shutdown.clone();
            async move { shutdown.notified().await }
        })
        .expect(fn_service(refuse_oversize_before_continue))
        .finish(map_config(make_app(), |_| AppConfig::default()))
}

/// Lets a request that waits for `100 Continue` go on, unless it declares a body over the
/// limit: that gets its 413 at once, and never sends the body.
async fn refuse_oversize_before_continue(request: Request) -> Result<Request, Response<BoxBody>> {
    match refuse_declared_oversize_head(request.headers()) {
        Ok(()) => Ok(request),
        Err(refusal) => Err(refusal.error_response().into()),
    }
}
