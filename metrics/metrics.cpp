#include "metrics/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <cstdio>
#include <set>
#include <stdexcept>

#include "metrics/process_stats.hpp"

namespace occasional::metrics {

namespace {

// Label values known in advance, exported at 0 before their first event
// (docs/metrics.md). A value not listed still appears at its first event.
// Signals: those the coordinator sends and those a crash raises.
constexpr const char* kKilledBy[] = {"SIGKILL", "SIGTERM", "SIGINT", "SIGSEGV",
                                     "SIGABRT", "SIGBUS",  "SIGFPE", "SIGILL"};
constexpr const char* kProtocolErrors[] = {
    "recvmsg",       "ctrunc",          "too_large",      "foreign_cmsg",
    "too_many_fds",  "empty",           "not_json",       "type_not_first",
    "missing_field", "wrong_type",      "bad_version",    "unknown_type",
    "unexpected_fd", "wrong_direction", "channel_closed", "exit_overdue"};
constexpr const char* kRejectReasons[] = {
    "peek_timeout",    "too_large",           "malformed",    "bad_host",
    "no_route",        "closed_before_route", "peek_error",   "routing_cap",
    "register_failed", "internal_error",      "queue_full",   "queue_timeout",
    "no_service",      "no_worker",           "spawn_failed", "shutdown"};
constexpr const char* kAcceptErrors[] = {"emfile", "enfile", "enobufs", "enomem", "other"};
constexpr const char* kHandoffRetries[] = {"worker_busy", "worker_gone"};
// A process's exit reason kinds (docs/messages.md, "Exit reasons").
constexpr const char* kProcessExits[] = {"normal", "error",  "exit_code",
                                         "signal", "linked", "start_failed"};

}  // namespace

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

struct Metrics::Impl {
  Impl(const ConnectionStats& c, std::function<Status()> s)
      : connections(c),
        status(std::move(s)),
        starts(BuildCounter()
                   .Name("occasional_worker_starts_total")
                   .Help("Worker processes started (first starts and restarts).")
                   .Register(registry)),
        restarts(BuildCounter()
                     .Name("occasional_worker_restarts_total")
                     .Help("Worker processes started to replace one that exited.")
                     .Register(registry)),
        exits(BuildCounter()
                  .Name("occasional_worker_exits_total")
                  .Help("Worker process exits, by reason (exited, killed, start_failed) and "
                        "signal (none unless killed).")
                  .Register(registry)),
        core_dumps(BuildCounter()
                       .Name("occasional_worker_core_dumps_total")
                       .Help("Worker processes killed by a signal that dumped core.")
                       .Register(registry)),
        last_exit_time(BuildGauge()
                           .Name("occasional_worker_last_exit_timestamp_seconds")
                           .Help("When a worker of the service last exited (Unix time).")
                           .Register(registry)),
        last_exit_code(BuildGauge()
                           .Name("occasional_worker_last_exit_code")
                           .Help("The last exit's code; 128 + signal number when killed; -1 "
                                 "when the process failed to start.")
                           .Register(registry)),
        uptime(BuildHistogram()
                   .Name("occasional_worker_uptime_seconds")
                   .Help("How long worker processes ran before they exited.")
                   .Register(registry)),
        backoff(BuildGauge()
                    .Name("occasional_worker_restart_backoff_seconds")
                    .Help("The delay of the restart scheduled last.")
                    .Register(registry)),
        service_failures(BuildCounter()
                             .Name("occasional_service_failures_total")
                             .Help("Times the service was marked failed (restart intensity "
                                   "exceeded).")
                             .Register(registry)),
        protocol_errors(BuildCounter()
                            .Name("occasional_worker_protocol_errors_total")
                            .Help("Control messages that failed a check; the worker is killed.")
                            .Register(registry)),
        watchdog_timeouts(BuildCounter()
                              .Name("occasional_worker_watchdog_timeouts_total")
                              .Help("Workers killed for a missed WATCHDOG=1.")
                              .Register(registry)),
        accept_probe_failures(
            BuildCounter()
                .Name("occasional_worker_accept_probe_failures_total")
                .Help("listen_fds workers (readiness accepting) that could not be looked at, "
                      "taken as ready at once.")
                .Register(registry)),
        closed_counter_unavailable(
            BuildCounter()
                .Name("occasional_worker_closed_counter_unavailable_total")
                .Help("Workers that asked for a shared closed-connection counter and got none "
                      "(they send a closed message per connection instead).")
                .Register(registry)),
        killed_at_grace(BuildCounter()
                            .Name("occasional_worker_killed_at_grace_total")
                            .Help("Stopping workers SIGKILLed at the grace deadline.")
                            .Register(registry)),
        closed_counter_clamped(
            BuildCounter()
                .Name("occasional_worker_closed_counter_clamped_total")
                .Help("Times a worker's shared closed counter read an impossible value "
                      "(backwards, beyond_handed) and was clamped.")
                .Register(registry)),
        spawn_deferred(BuildCounter()
                           .Name("occasional_worker_spawn_deferred_total")
                           .Help("Spawns that failed for want of the coordinator's own "
                                 "resources, retried without counting towards the restart "
                                 "intensity, by failed call and errno.")
                           .Register(registry)),
        admin_requests(BuildCounter()
                           .Name("occasional_admin_requests_total")
                           .Help("Admin endpoint responses by HTTP status code (0: accept "
                                 "failed, 408: timed out reading a request).")
                           .Register(registry)),
        admin_refused(BuildCounter()
                          .Name("occasional_admin_refused_total")
                          .Help("Admin requests or connections refused, by reason.")
                          .Register(registry)),
        systemd_notify_errors(BuildCounter()
                                  .Name("occasional_systemd_notify_errors_total")
                                  .Help("Messages to the coordinator's own service manager "
                                        "(NOTIFY_SOCKET) that could not be sent, by reason.")
                                  .Register(registry)),
        event_streams(BuildGauge()
                          .Name("occasional_admin_event_streams")
                          .Help("GET /v1/events streams open now.")
                          .Register(registry)
                          .Add({})),
        upgrades(BuildCounter()
                     .Name("occasional_upgrades_total")
                     .Help("Coordinator upgrades: times a new binary took over in place "
                           "(docs/supervision.md).")
                     .Register(registry)
                     .Add({})),
        upgrade_failures(BuildCounter()
                             .Name("occasional_upgrade_failures_total")
                             .Help("Coordinator upgrades that did not happen (the running "
                                   "coordinator went on), by reason.")
                             .Register(registry)),
        event_streams_dropped(BuildCounter()
                                  .Name("occasional_admin_event_streams_dropped_total")
                                  .Help("Event streams closed because the client did not take "
                                        "what it was sent (buffer full or a write stalled).")
                                  .Register(registry)
                                  .Add({})) {
    for (const char* reason : kAdminRefusals) admin_refused.Add({{"reason", reason}});
    for (const char* reason : kSystemdNotifyErrors) systemd_notify_errors.Add({{"reason", reason}});
    for (const char* reason : kUpgradeFailures) upgrade_failures.Add({{"reason", reason}});
  }

  prometheus::Registry registry;
  const ConnectionStats& connections;
  std::function<Status()> status;
  prometheus::Family<prometheus::Counter>& starts;
  prometheus::Family<prometheus::Counter>& restarts;
  prometheus::Family<prometheus::Counter>& exits;
  prometheus::Family<prometheus::Counter>& core_dumps;
  prometheus::Family<prometheus::Gauge>& last_exit_time;
  prometheus::Family<prometheus::Gauge>& last_exit_code;
  prometheus::Family<prometheus::Histogram>& uptime;
  prometheus::Family<prometheus::Gauge>& backoff;
  prometheus::Family<prometheus::Counter>& service_failures;
  prometheus::Family<prometheus::Counter>& protocol_errors;
  prometheus::Family<prometheus::Counter>& watchdog_timeouts;
  prometheus::Family<prometheus::Counter>& accept_probe_failures;
  prometheus::Family<prometheus::Counter>& closed_counter_unavailable;
  prometheus::Family<prometheus::Counter>& killed_at_grace;
  prometheus::Family<prometheus::Counter>& closed_counter_clamped;
  prometheus::Family<prometheus::Counter>& spawn_deferred;
  prometheus::Family<prometheus::Counter>& admin_requests;
  prometheus::Family<prometheus::Counter>& admin_refused;
  prometheus::Family<prometheus::Counter>& systemd_notify_errors;
  prometheus::Gauge& event_streams;
  prometheus::Counter& upgrades;
  prometheus::Family<prometheus::Counter>& upgrade_failures;
  prometheus::Counter& event_streams_dropped;

  // What the coordinator this one upgraded had counted, by series (name,
  // then labels): added to this one's at every scrape.
  struct CarriedHistogram {
    uint64_t count = 0;
    double sum = 0;
    std::vector<ClientMetric::Bucket> buckets;  // cumulative counts
  };
  std::map<std::string, double> carried_counters;
  std::map<std::string, CarriedHistogram> carried_histograms;
  // Every family as exported, carried counts included.
  std::vector<MetricFamily> families() const;

  static const prometheus::Histogram::BucketBoundaries& uptime_buckets() {
    static const prometheus::Histogram::BucketBoundaries b{0.01, 0.1, 1, 10, 60, 600, 3600, 86400};
    return b;
  }

  // Families read at scrape time.
  std::vector<MetricFamily> snapshot() const;
};

namespace {

MetricFamily family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

ClientMetric value(double v, std::vector<ClientMetric::Label> labels = {},
                   MetricType type = MetricType::Gauge) {
  ClientMetric m;
  m.label = std::move(labels);
  if (type == MetricType::Counter)
    m.counter.value = v;
  else
    m.gauge.value = v;
  return m;
}

// Each reason that happened.
void add_by_reason(MetricFamily& f, const std::map<std::string, uint64_t>& counts) {
  for (const auto& [reason, n] : counts)
    f.metric.push_back(value(static_cast<double>(n), {{"reason", reason}}, MetricType::Counter));
}

// Every known reason (0 until it happens), then any other that happened.
template <size_t N>
void add_by_reason(MetricFamily& f, const char* const (&known)[N],
                   const std::map<std::string, uint64_t>& counts) {
  std::map<std::string, uint64_t> all(counts);
  for (const char* reason : known) all.try_emplace(reason, 0);
  add_by_reason(f, all);
}

}  // namespace

namespace {

void add_processes(std::vector<MetricFamily>& out, const ProcessesStatus& p) {
  using T = MetricType;
  auto one = [&out](const char* name, const char* help, uint64_t n, T type) {
    auto f = family(name, help, type);
    f.metric.push_back(value(static_cast<double>(n), {}, type));
    out.push_back(std::move(f));
  };
  one("occasional_processes", "Processes alive now (processes and messages).", p.alive, T::Gauge);
  one("occasional_processes_spawned_total",
      "Processes started: spawned ones, process zero, ports and service workers.", p.spawned,
      T::Counter);
  auto exits = family("occasional_process_exits_total",
                      "Process exits, by the kind of their exit reason.", T::Counter);
  add_by_reason(exits, kProcessExits, p.exits);
  out.push_back(std::move(exits));
  one("occasional_process_channels_total", "Channels (socketpairs) brokered between processes.",
      p.channels, T::Counter);
  one("occasional_process_sends_dropped_total",
      "Messages dropped because their address had no live process (seen at the coordinator).",
      p.sends_dropped, T::Counter);
  one("occasional_process_monitors", "Monitors active now.", p.monitors, T::Gauge);
  one("occasional_process_links", "Pairs of linked processes now.", p.links, T::Gauge);
  one("occasional_process_protocol_errors_total",
      "Processes that broke the control protocol (each is killed).", p.protocol_errors, T::Counter);
  one("occasional_process_notices_dropped_total",
      "Control notices (DOWN, EXIT, replies) to a process whose control channel was gone.",
      p.notices_dropped, T::Counter);
  one("occasional_process_connect_failures_total",
      "Channels the coordinator could not make (socketpair failed); the message is dropped.",
      p.connect_failures, T::Counter);
}

}  // namespace

std::vector<MetricFamily> Metrics::Impl::snapshot() const {
  std::vector<MetricFamily> out;
  using T = MetricType;

  const Status st = status();
  auto workers = family("occasional_workers", "Worker processes by state now.", T::Gauge);
  auto ready = family("occasional_service_ready",
                      "1 when the service has a ready worker and is not failed.", T::Gauge);
  auto failed = family("occasional_service_failed",
                       "1 while the service is failed (until started again).", T::Gauge);
  auto wanted = family("occasional_service_replicas", "Replicas the service should run.", T::Gauge);
  for (const ServiceStatus& s : st.services) {
    std::map<std::string, int> by_state{
        {"ready", 0}, {"starting", 0}, {"backoff", 0}, {"stopping", 0}};
    for (const WorkerStatus& w : s.workers) {
      if (w.state == "running")
        ++by_state[w.ready ? "ready" : "starting"];
      else if (w.state == "backoff" || w.state == "stopping")
        ++by_state[w.state];
    }
    for (const auto& [state, n] : by_state)
      workers.metric.push_back(value(n, {{"service", s.name}, {"state", state}}));
    ready.metric.push_back(value(s.ready_workers > 0 && !s.failed ? 1 : 0, {{"service", s.name}}));
    failed.metric.push_back(value(s.failed ? 1 : 0, {{"service", s.name}}));
    wanted.metric.push_back(value(s.replicas, {{"service", s.name}}));
  }
  out.push_back(std::move(workers));
  out.push_back(std::move(ready));
  out.push_back(std::move(failed));
  out.push_back(std::move(wanted));
  auto notify =
      family("occasional_notify_rejected_total",
             "NOTIFY_SOCKET datagrams rejected (no credentials, unknown sender).", T::Counter);
  notify.metric.push_back(value(static_cast<double>(st.notify_rejected), {}, T::Counter));
  out.push_back(std::move(notify));
  auto orphans = family("occasional_orphans_reaped_total",
                        "Processes reparented to the coordinator and reaped.", T::Counter);
  orphans.metric.push_back(value(static_cast<double>(st.orphans_reaped), {}, T::Counter));
  out.push_back(std::move(orphans));
  auto sup_errors = family("occasional_supervisor_errors_total",
                           "Failures of the coordinator's own supervision machinery (guardian "
                           "re-fork, loop registration), logged and retried, by reason.",
                           T::Counter);
  add_by_reason(sup_errors, st.supervisor_errors);
  out.push_back(std::move(sup_errors));
  auto dropped =
      family("occasional_log_lines_dropped_total",
             "Event log lines dropped because stderr was full (its reader is slow).", T::Counter);
  dropped.metric.push_back(value(static_cast<double>(st.log_lines_dropped), {}, T::Counter));
  out.push_back(std::move(dropped));
  if (st.processes) add_processes(out, *st.processes);

  const ConnectionStats& c = connections;
  auto accepted = family("occasional_connections_accepted_total",
                         "Connections accepted on every listener.", T::Counter);
  accepted.metric.push_back(value(static_cast<double>(c.accepted), {}, T::Counter));
  out.push_back(std::move(accepted));
  auto handed = family("occasional_connections_handed_off_total",
                       "Connections handed to a worker (or an inetd process).", T::Counter);
  handed.metric.push_back(value(static_cast<double>(c.handed_off), {}, T::Counter));
  out.push_back(std::move(handed));
  auto batches =
      family("occasional_handoff_batches_total",
             "conns messages: several connections handed to one worker at once.", T::Counter);
  batches.metric.push_back(value(static_cast<double>(c.handoff_batches), {}, T::Counter));
  out.push_back(std::move(batches));
  auto rejected = family("occasional_connections_rejected_total",
                         "Connections the gateway closed itself, by reason.", T::Counter);
  add_by_reason(rejected, kRejectReasons, c.rejected);
  out.push_back(std::move(rejected));
  auto pending = family("occasional_connections_pending",
                        "Connections waiting in service queues now.", T::Gauge);
  pending.metric.push_back(value(static_cast<double>(c.pending)));
  out.push_back(std::move(pending));
  auto peeking = family("occasional_connections_routing",
                        "Connections being peeked at for routing now.", T::Gauge);
  peeking.metric.push_back(value(static_cast<double>(c.peeking)));
  out.push_back(std::move(peeking));
  auto routing_max =
      family("occasional_connections_routing_max",
             "The most connections being routed at once (half the fd limit); at it, a new "
             "connection closes the oldest being routed (reason routing_cap).",
             T::Gauge);
  routing_max.metric.push_back(value(static_cast<double>(c.routing_max)));
  out.push_back(std::move(routing_max));
  auto accept_errors =
      family("occasional_accept_errors_total", "accept4() failures, by reason.", T::Counter);
  add_by_reason(accept_errors, kAcceptErrors, c.accept_errors);
  out.push_back(std::move(accept_errors));
  auto holds = family("occasional_accept_holds_total",
                      "Times a listener stopped accepting because every service it feeds had a "
                      "full pending queue (clients wait in the kernel's backlog).",
                      T::Counter);
  holds.metric.push_back(value(static_cast<double>(c.accept_holds), {}, T::Counter));
  out.push_back(std::move(holds));
  auto held =
      family("occasional_listeners_held",
             "Listeners not accepting now because their services' queues are full.", T::Gauge);
  held.metric.push_back(value(static_cast<double>(c.listeners_held)));
  out.push_back(std::move(held));
  auto yields = family(
      "occasional_accept_yields_total",
      "Times a listener yielded the CPU between two sweeps of its backlog in one wake-up, by "
      "whether other work ran on its CPU meanwhile (shared) or not (free).",
      T::Counter);
  yields.metric.push_back(
      value(static_cast<double>(c.accept_yields_shared), {{"cpu", "shared"}}, T::Counter));
  yields.metric.push_back(
      value(static_cast<double>(c.accept_yields_free), {{"cpu", "free"}}, T::Counter));
  out.push_back(std::move(yields));
  auto retries =
      family("occasional_handoff_retries_total",
             "Failed handoffs: a worker did not take a connection, which went to another worker or "
             "the queue, by reason.",
             T::Counter);
  add_by_reason(retries, kHandoffRetries, c.handoff_retries);
  out.push_back(std::move(retries));

  auto duration =
      family("occasional_handoff_duration_seconds",
             "From accept to the worker's socket holding the connection.", T::Histogram);
  ClientMetric h;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < DurationHistogram::kBounds.size(); ++i) {
    cumulative += c.handoff_duration.counts[i];
    h.histogram.bucket.push_back({cumulative, DurationHistogram::kBounds[i]});
  }
  h.histogram.bucket.push_back({c.handoff_duration.count, std::numeric_limits<double>::infinity()});
  h.histogram.sample_count = c.handoff_duration.count;
  h.histogram.sample_sum = c.handoff_duration.sum;
  duration.metric.push_back(std::move(h));
  out.push_back(std::move(duration));

  const ProcessStats p = read_process_stats();
  auto add = [&out](const char* name, const char* help, T type, double v) {
    auto f = family(name, help, type);
    f.metric.push_back(value(v, {}, type));
    out.push_back(std::move(f));
  };
  add("process_cpu_seconds_total", "User and system CPU time spent in seconds.", T::Counter,
      p.cpu_seconds);
  add("process_open_fds", "Number of open file descriptors.", T::Gauge, p.open_fds);
  add("process_max_fds", "Maximum number of open file descriptors.", T::Gauge, p.max_fds);
  add("process_resident_memory_bytes", "Resident memory size in bytes.", T::Gauge,
      p.resident_bytes);
  add("process_virtual_memory_bytes", "Virtual memory size in bytes.", T::Gauge, p.virtual_bytes);
  add("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
      T::Gauge, p.start_time_seconds);
  return out;
}

Metrics::Metrics(const ConnectionStats& connections, std::function<Status()> status)
    : impl_(std::make_unique<Impl>(connections, std::move(status))) {}

Metrics::~Metrics() = default;

void Metrics::declare_service(const std::string& service) {
  Impl& m = *impl_;
  const prometheus::Labels s{{"service", service}};
  // Not occasional_worker_closed_counter_unavailable_total: promtool's lint
  // objects to "counter" in its name, which only shows once it exists.
  for (auto* family : {&m.starts, &m.restarts, &m.core_dumps, &m.service_failures,
                       &m.watchdog_timeouts, &m.killed_at_grace, &m.accept_probe_failures})
    family->Add(s);
  m.exits.Add({{"service", service}, {"reason", "exited"}, {"signal", "none"}});
  m.exits.Add({{"service", service}, {"reason", "start_failed"}, {"signal", "none"}});
  for (const char* signal : kKilledBy)
    m.exits.Add({{"service", service}, {"reason", "killed"}, {"signal", signal}});
  for (const char* reason : kProtocolErrors)
    m.protocol_errors.Add({{"service", service}, {"reason", reason}});
  m.uptime.Add(s, Impl::uptime_buckets());
}

void Metrics::worker_started(const std::string& service, bool restart) {
  impl_->starts.Add({{"service", service}}).Increment();
  if (restart) impl_->restarts.Add({{"service", service}}).Increment();
}

void Metrics::worker_exited(const std::string& service, const std::string& reason,
                            const std::string& signal, bool core_dumped, int code,
                            double uptime_seconds, double exit_time_seconds) {
  impl_->exits.Add({{"service", service}, {"reason", reason}, {"signal", signal}}).Increment();
  if (core_dumped) impl_->core_dumps.Add({{"service", service}}).Increment();
  impl_->last_exit_time.Add({{"service", service}}).Set(exit_time_seconds);
  impl_->last_exit_code.Add({{"service", service}}).Set(code);
  impl_->uptime.Add({{"service", service}}, Impl::uptime_buckets()).Observe(uptime_seconds);
}

void Metrics::restart_scheduled(const std::string& service, double delay_seconds) {
  impl_->backoff.Add({{"service", service}}).Set(delay_seconds);
}

void Metrics::service_failed(const std::string& service) {
  impl_->service_failures.Add({{"service", service}}).Increment();
}

void Metrics::protocol_error(const std::string& service, const std::string& reason) {
  impl_->protocol_errors.Add({{"service", service}, {"reason", reason}}).Increment();
}

void Metrics::watchdog_timeout(const std::string& service) {
  impl_->watchdog_timeouts.Add({{"service", service}}).Increment();
}

void Metrics::accept_probe_failed(const std::string& service) {
  impl_->accept_probe_failures.Add({{"service", service}}).Increment();
}

void Metrics::closed_counter_unavailable(const std::string& service) {
  impl_->closed_counter_unavailable.Add({{"service", service}}).Increment();
}

void Metrics::killed_at_grace(const std::string& service) {
  impl_->killed_at_grace.Add({{"service", service}}).Increment();
}

void Metrics::closed_counter_clamped(const std::string& service, const std::string& reason) {
  impl_->closed_counter_clamped.Add({{"service", service}, {"reason", reason}}).Increment();
}

void Metrics::spawn_deferred(const std::string& service, const std::string& reason) {
  impl_->spawn_deferred.Add({{"service", service}, {"reason", reason}}).Increment();
}

void Metrics::admin_request(int code) {
  impl_->admin_requests.Add({{"code", std::to_string(code)}}).Increment();
}

void Metrics::admin_refused(const std::string& reason) {
  impl_->admin_refused.Add({{"reason", reason}}).Increment();
}

void Metrics::systemd_notify_error(const std::string& reason) {
  impl_->systemd_notify_errors.Add({{"reason", reason}}).Increment();
}

void Metrics::event_streams(size_t open) {
  impl_->event_streams.Set(static_cast<double>(open));
}

void Metrics::upgrade_done() {
  impl_->upgrades.Increment();
}

void Metrics::upgrade_failed(const std::string& reason) {
  impl_->upgrade_failures.Add({{"reason", reason}}).Increment();
}

void Metrics::event_stream_dropped() {
  impl_->event_streams_dropped.Increment();
}

namespace {

// Series keys and carried text: label names and values escaped so that
// ' ', ',', '=', '%' and line breaks never appear raw.
std::string escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == ' ' || c == ',' || c == '=' || c == '%' || c == '\n' || c == '\r') {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string labels_text(const std::vector<ClientMetric::Label>& labels) {
  std::string out;
  for (const ClientMetric::Label& l : labels)
    out += (out.empty() ? "" : ",") + escape(l.name) + "=" + escape(l.value);
  return out.empty() ? "-" : out;
}

std::vector<ClientMetric::Label> parse_labels(std::string_view text) {
  std::vector<ClientMetric::Label> out;
  if (text == "-") return out;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    std::string_view pair = text.substr(0, comma);
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos) throw std::invalid_argument("carried metrics: bad labels");
    out.push_back({unescape(pair.substr(0, eq)), unescape(pair.substr(eq + 1))});
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
  }
  return out;
}

bool carried_family(const MetricFamily& f) {
  return (f.type == MetricType::Counter || f.type == MetricType::Histogram) &&
         !f.name.starts_with("process_");
}

}  // namespace

std::vector<MetricFamily> Metrics::Impl::families() const {
  std::vector<MetricFamily> out = registry.Collect();
  std::vector<MetricFamily> now = snapshot();
  out.insert(out.end(), std::make_move_iterator(now.begin()), std::make_move_iterator(now.end()));
  if (carried_counters.empty() && carried_histograms.empty()) return out;
  std::set<std::string> seen;  // series keys
  std::set<std::string> names;
  for (MetricFamily& f : out) {
    if (!carried_family(f)) continue;
    names.insert(f.name);
    for (ClientMetric& m : f.metric) {
      const std::string key = f.name + " " + labels_text(m.label);
      seen.insert(key);
      if (f.type == MetricType::Counter) {
        if (auto it = carried_counters.find(key); it != carried_counters.end())
          m.counter.value += it->second;
      } else if (auto it = carried_histograms.find(key); it != carried_histograms.end()) {
        const CarriedHistogram& h = it->second;
        if (h.buckets.size() != m.histogram.bucket.size()) continue;
        m.histogram.sample_count += h.count;
        m.histogram.sample_sum += h.sum;
        for (size_t i = 0; i < h.buckets.size(); ++i)
          m.histogram.bucket[i].cumulative_count += h.buckets[i].cumulative_count;
      }
    }
  }
  // Series the old coordinator had and this one has not had yet (in a
  // family this one has not exported yet, maybe): as they were.
  auto family_of = [&out, &names](const std::string& name, MetricType type) -> MetricFamily& {
    if (!names.contains(name)) {
      names.insert(name);
      out.push_back(family(name, "Carried over from the coordinator this one upgraded.", type));
      return out.back();
    }
    for (MetricFamily& f : out)
      if (f.name == name) return f;
    return out.back();  // not reached: `names` lists what `out` has
  };
  for (const auto& [key, v] : carried_counters) {
    if (seen.contains(key)) continue;
    const size_t sp = key.find(' ');
    family_of(key.substr(0, sp), MetricType::Counter)
        .metric.push_back(value(v, parse_labels(key.substr(sp + 1)), MetricType::Counter));
  }
  for (const auto& [key, h] : carried_histograms) {
    if (seen.contains(key)) continue;
    const size_t sp = key.find(' ');
    ClientMetric m;
    m.label = parse_labels(key.substr(sp + 1));
    m.histogram.sample_count = h.count;
    m.histogram.sample_sum = h.sum;
    m.histogram.bucket = h.buckets;
    family_of(key.substr(0, sp), MetricType::Histogram).metric.push_back(std::move(m));
  }
  return out;
}

std::string Metrics::carried_counters() const {
  std::string out;
  char number[64];
  for (const MetricFamily& f : impl_->families()) {
    if (!carried_family(f)) continue;
    for (const ClientMetric& m : f.metric) {
      if (f.type == MetricType::Counter) {
        std::snprintf(number, sizeof number, "%.17g", m.counter.value);
        out += "c " + f.name + " " + labels_text(m.label) + " " + number + "\n";
        continue;
      }
      std::snprintf(number, sizeof number, "%.17g", m.histogram.sample_sum);
      out += "h " + f.name + " " + labels_text(m.label) + " " +
             std::to_string(m.histogram.sample_count) + " " + number + " ";
      for (size_t i = 0; i < m.histogram.bucket.size(); ++i) {
        const ClientMetric::Bucket& b = m.histogram.bucket[i];
        std::snprintf(number, sizeof number, "%.17g", b.upper_bound);
        out += (i ? ";" : "") + std::string(number) + ":" + std::to_string(b.cumulative_count);
      }
      out += "\n";
    }
  }
  return out;
}

void Metrics::carry_counters(std::string_view text) {
  while (!text.empty()) {
    const size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    std::vector<std::string_view> fields;
    while (!line.empty()) {
      const size_t sp = line.find(' ');
      fields.push_back(line.substr(0, sp));
      line = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
    }
    if (fields.size() == 4 && fields[0] == "c") {
      impl_->carried_counters[std::string(fields[1]) + " " + std::string(fields[2])] +=
          std::stod(std::string(fields[3]));
    } else if (fields.size() == 6 && fields[0] == "h") {
      Impl::CarriedHistogram h;
      h.count = std::stoull(std::string(fields[3]));
      h.sum = std::stod(std::string(fields[4]));
      std::string_view b = fields[5];
      while (!b.empty()) {
        const size_t semi = b.find(';');
        const std::string bucket(b.substr(0, semi));
        const size_t colon = bucket.find(':');
        if (colon == std::string::npos)
          throw std::invalid_argument("carried metrics: a bucket without its bound");
        h.buckets.push_back(
            {std::stoull(bucket.substr(colon + 1)), std::stod(bucket.substr(0, colon))});
        b = semi == std::string_view::npos ? std::string_view() : b.substr(semi + 1);
      }
      impl_->carried_histograms[std::string(fields[1]) + " " + std::string(fields[2])] = h;
    } else {
      throw std::invalid_argument("carried metrics: a line of " + std::to_string(fields.size()) +
                                  " fields");
    }
  }
}

std::string Metrics::exposition() const {
  return prometheus::TextSerializer().Serialize(impl_->families());
}

}  // namespace occasional::metrics
