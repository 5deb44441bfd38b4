//! `choreo serve`: the long-running local server. One port carries the ingest API, the
//! notifier's WebSocket, the customer web page and the local issuer's key set; behind it run
//! the bus, the back office and its outbox relay, the agents and the notifier's consumer, all
//! over one data directory.
//!
//! Shutdown (Ctrl-C, SIGTERM, or [`Server::shutdown`]) goes in the order that loses nothing:
//! stop taking connections and answer the requests in flight; close the notifier's sockets
//! (1001, going away: clients resume from their last acknowledged number); let the agents
//! finish the events they hold (what they had not taken stays in their inboxes); stop the
//! notifier's consumer and the outbox relay last, so completions published during the drain
//! are still pushed or wait durably.

mod local_auth;
mod page;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use choreo_auth::Issuer;
use choreo_bus::Inboxes;
use choreo_consumers::local::{BACKOFFICE_FILE, Local, Options};
use choreo_models::ModelSpec;
use choreo_notifier::Notifier;
use choreo_producers::Publisher;
use choreo_producers::http::Ingest;
use choreo_producers::outbox::Relay;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Status;
use crate::cli::ServeArgs;

/// Whose tokens the server trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The local issuer of the data directory (`choreo token issue`; the page's sign-in).
    Local,
    /// A production issuer: its JWKS document (refreshed every 10 minutes) and its `iss`.
    Jwks { url: String, issuer: String },
}

/// What to serve, and where.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub agents_dir: Option<PathBuf>,
    pub model: ModelSpec,
    pub trust: Trust,
}

/// A running server.
pub struct Server {
    /// Where it listens (the chosen port when asked for port 0).
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    local: Local,
    notifier: Arc<Notifier>,
    notifier_consumer: choreo_notifier::Consumer,
    relay: choreo_producers::outbox::RelayHandle,
    jwks_refresh: Option<JoinHandle<()>>,
}

/// How often the outbox relay looks for new rows when nothing woke it.
const RELAY_POLL: Duration = Duration::from_millis(200);
/// Starts everything and returns once the port is open.
pub async fn start(options: ServeOptions) -> anyhow::Result<Server> {
    // The port first: a port in use fails before anything touches the data directory.
    let listener =
        tokio::net::TcpListener::bind(options.addr).await.with_context(|| format!("listen on {}", options.addr))?;
    let addr = listener.local_addr().context("the listening address")?;
    let data_dir = options.data_dir.clone();
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let (verifier, issuer, jwks_refresh) = match &options.trust {
        Trust::Local => {
            let issuer = Issuer::open_or_create(&data_dir).context("open the local issuer")?;
            (issuer.verifier(), Some(Arc::new(issuer)), None)
        }
        Trust::Jwks { url, issuer } => {
            let verifier = crate::jwks::fetch(url, issuer).await?;
            let refresh = tokio::spawn(crate::jwks::refresh(verifier.clone(), url.clone()));
            (verifier, None, Some(refresh))
        }
    };

    let mut local_options = Options::new(&data_dir);
    local_options.model = options.model.clone();
    if let Some(agents) = &options.agents_dir {
        local_options.agents_dir = agents.clone();
    }
    let local = Local::start(local_options).await.context("start the agents")?;

    let notifier = Notifier::open(&data_dir, verifier.clone()).context("open the notifier")?;
    choreo_notifier::install(local.bus.as_ref()).await.context("subscribe the notifier")?;
    let inboxes: Arc<dyn Inboxes> = local.bus.clone();
    let notifier_consumer = notifier.spawn(inboxes);

    let publisher = Publisher::new(local.bus.clone());
    let relay = Relay::open(&data_dir.join(BACKOFFICE_FILE), publisher.clone())
        .context("open the back office's outbox")?
        .spawn(RELAY_POLL);
    let ingest = Ingest::open(&data_dir, publisher, verifier).context("open the ingest API")?;

    let mut app: Router = Router::new().merge(ingest.router()).merge(notifier.router()).merge(page::router());
    if let Some(issuer) = issuer {
        app = app.merge(local_auth::router(issuer));
    }

    let (stop, mut stopped) = watch::channel(false);
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    Ok(Server { addr, stop, http, local, notifier, notifier_consumer, relay, jwks_refresh })
}

impl Server {
    /// Stops gracefully (see the module docs for the order).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        // WebSockets live until closed: close them, or the graceful HTTP shutdown never ends.
        self.notifier.close_sessions();
        let served = self.http.await.context("the HTTP server task")?;
        self.local.shutdown().await;
        self.notifier_consumer.shutdown().await;
        self.relay.shutdown().await;
        if let Some(refresh) = self.jwks_refresh {
            refresh.abort();
        }
        served.context("the HTTP server")
    }
}

/// `choreo serve`: runs until Ctrl-C or SIGTERM.
pub fn run(args: &ServeArgs, data_dir: &std::path::Path) -> anyhow::Result<Status> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start the runtime")?;
    runtime.block_on(async {
        let trust = match (&args.jwks_url, &args.issuer) {
            (Some(url), Some(issuer)) => Trust::Jwks { url: url.clone(), issuer: issuer.clone() },
            _ => Trust::Local,
        };
        let local_sign_in = matches!(trust, Trust::Local);
        let server = start(ServeOptions {
            addr: args.addr,
            data_dir: data_dir.to_path_buf(),
            agents_dir: args.agents_dir.clone(),
            model: args.model.clone(),
            trust,
        })
        .await?;
        let base = format!("http://{}", server.addr);
        println!("choreo serve: listening on {base}");
        println!("  web page        {base}/");
        println!("  support API     POST {base}/v1/support-requests");
        println!("  CloudEvents     POST {base}/v1/events");
        println!("  notifications   ws://{}/v1/notifications?token=...", server.addr);
        println!("  OpenAPI         {base}/v1/openapi.json");
        if local_sign_in {
            println!("  tokens          choreo token issue --customer c-1001 --data-dir {}", data_dir.display());
        }
        println!("data: {} · model: {} · Ctrl-C stops", data_dir.display(), args.model);
        stop_signal().await;
        println!("choreo serve: stopping (finishing work in flight)");
        server.shutdown().await?;
        println!("choreo serve: stopped");
        Ok(Status::Success)
    })
}

async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
