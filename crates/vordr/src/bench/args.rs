//! The options of `vordr bench`.

use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    /// CRI endpoint under test
    #[arg(long, short = 'r', default_value = "unix:///run/vordr/vordr.sock")]
    pub endpoint: String,
    /// Label for the endpoint under test
    #[arg(long, default_value = "vordr")]
    pub name: String,
    /// A second endpoint to run the same benchmark against (e.g. containerd)
    #[arg(long)]
    pub compare: Option<String>,
    /// Label for the second endpoint
    #[arg(long, default_value = "containerd")]
    pub compare_name: String,
    /// Pod lifecycles per endpoint
    #[arg(long, short = 'n', default_value_t = 30)]
    pub iterations: usize,
    /// Untimed warm-up lifecycles per endpoint (pulls the pause image, fills caches)
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Print the results as JSON as well
    #[arg(long)]
    pub json: bool,
    /// Skip the pod sandbox lifecycle
    #[arg(long)]
    pub no_pods: bool,
    /// Time PullImage (then RemoveImage) of this image, `iterations` times; repeatable
    #[arg(long)]
    pub pull: Vec<String>,
    /// Pull `<prefix>0` .. `<prefix>N-1` (see --list-count), then time
    /// ListImages and ImageStatus with that many images present
    #[arg(long)]
    pub list_prefix: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub list_count: usize,
    /// Also time a pod with one container of this image (command `sleep`):
    /// Create, Start, Stop, Remove and the whole pod-plus-container lifecycle
    #[arg(long)]
    pub container: Option<String>,
    /// Then keep this many such pods running and report memory: the
    /// daemons' RSS (idle and holding) and the RSS and PSS per shim
    #[arg(long, default_value_t = 0)]
    pub hold: usize,
    /// With --hold: also time ListContainerStats and ListPodSandboxStats
    /// (kubelet's stats poll) while the held pods run
    #[arg(long)]
    pub stats: bool,
    /// With --container: also time Exec of `echo` (RPC, SPDY upgrade,
    /// streams, exit status) and a 64 MiB download through PortForward from
    /// a web server in the pod
    #[arg(long)]
    pub streaming: bool,
    /// pid of the daemon behind --endpoint (for the memory report)
    #[arg(long)]
    pub daemon_pid: Option<u32>,
    /// pid of the daemon behind --compare
    #[arg(long)]
    pub compare_daemon_pid: Option<u32>,
}
