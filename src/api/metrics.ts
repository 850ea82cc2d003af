/**
 * The daemon's Prometheus metrics, one registry per daemon (never
 * prom-client's global one, so several daemons or tests share a process).
 * The layers below know nothing of prom-client: the VTEP keeps counters that
 * are read at scrape time, the DNS server and the stores report to observer
 * callbacks made here, and the networks are listed at scrape time.
 */
import { type Server, createServer } from 'node:http';
import { isIP } from 'node:net';
import { Counter, Gauge, Histogram, type Metric, Registry, collectDefaultMetrics } from 'prom-client';
import { InvalidArgument } from '../errors.js';
import type { DockerNetwork } from './docker.js';
import type { EmbeddedDns } from '../dns/embedded.js';
import type { DnsQueryObservation, DnsQueryResult } from '../dns/server.js';
import type { StoreObserver } from '../store/observed.js';
import type { PeerLiveness } from '../vxlan/liveness.js';
import type { Vtep, VtepNetworkStats, VtepStats } from '../vxlan/vtep.js';
import type { EspCounters } from '../sys/esp.js';

/** What a scrape reads from the VTEP. */
export type VtepCounterSource = Pick<Vtep, 'stats' | 'networkStats' | 'peerStates'>;

/** Where `--metrics-addr` serves /metrics over TCP. */
export interface MetricsAddress {
  readonly address: string;
  readonly port: number;
}

export interface DaemonMetricsOptions {
  /** Add prom-client's process and Node.js metrics (open fds, RSS, event loop lag…); a daemon wants them, tests need not. */
  readonly processMetrics?: boolean;
}

// Docker's option naming a network's VNI; written out here so this module does not load the overlay driver and its kernel bindings.
const VXLAN_ID_OPTION = 'com.docker.network.driver.overlay.vxlanid_list';
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface Snapshot {
  readonly networks: readonly DockerNetwork[];
  readonly vtep:
    | { readonly stats: Readonly<VtepStats>; readonly networks: readonly VtepNetworkStats[]; readonly peers: readonly PeerLiveness[] }
    | undefined;
  /** VNI → network name, for the VTEP's labels. */
  readonly names: ReadonlyMap<number, string>;
  readonly esp: { readonly sealed: EspCounters; readonly opened: EspCounters } | undefined;
}

const EMPTY: Snapshot = { networks: [], vtep: undefined, names: new Map(), esp: undefined };

/** The host's ESP table (src/sys/esp.ts), read at scrape time. */
export interface EspCounterSource {
  totals(direction: 'inbound' | 'outbound'): EspCounters;
}

/** `badIcv` → `bad_icv`: a counter's name as a label value. */
function snakeCase(name: string): string {
  return name.replace(/(?<=[a-z])(?=[A-Z])/g, '_').toLowerCase();
}

/** `dropUnknownVni` → `unknown_vni`: a drop counter's reason label. */
function dropReason(counter: string): string {
  return snakeCase(counter.slice('drop'.length));
}

/** Each `drop*` counter of `counters` with its reason. */
function drops(counters: object): [reason: string, value: number][] {
  return Object.entries(counters).flatMap(([name, value]) =>
    name.startsWith('drop') && typeof value === 'number' ? [[dropReason(name), value] as [string, number]] : [],
  );
}

const DNS_RESULTS = ['answered', 'nodata', 'forwarded', 'nxdomain', 'servfail', 'refused', 'malformed', 'dropped'] as const;
const DNS_TRANSPORTS = ['udp', 'tcp'] as const;
/** Every result has its place in DNS_RESULTS (a result added to DnsQueryResult fails to compile until it does). */
const DNS_RESULT_INDEX: Record<DnsQueryResult, number> = {
  answered: 0,
  nodata: 1,
  forwarded: 2,
  nxdomain: 3,
  servfail: 4,
  refused: 5,
  malformed: 6,
  dropped: 7,
};

/**
 * netctl_dns_queries_total and netctl_dns_query_duration_seconds, kept as
 * numbers in typed arrays and turned into prom-client's values only when
 * scraped. The embedded DNS observes every query, over 100,000 a second, and
 * prom-client's Counter and Histogram make label strings and objects on
 * every observation: garbage that has the collector stop the event loop,
 * and delay every query waiting, several times a second. The exposition is
 * what those two would render.
 */
class DnsQueryMetrics {
  /** Queries per result and transport not yet added to the counter (`DNS_TRANSPORTS.length * result + transport`). */
  readonly #uncounted = new Float64Array(DNS_RESULTS.length * DNS_TRANSPORTS.length);
  /** Per result: observations per latency bucket (not cumulative), then those past every bound. */
  readonly #buckets = new Float64Array(DNS_RESULTS.length * (LATENCY_BUCKETS.length + 1));
  readonly #sums = new Float64Array(DNS_RESULTS.length);
  readonly #observed = new Float64Array(DNS_RESULTS.length);

  constructor(registers: Registry[]) {
    const uncounted = this.#uncounted;
    new Counter({
      name: 'netctl_dns_queries_total',
      help: 'Embedded DNS queries by result (answered, nodata, forwarded, nxdomain, servfail, refused, malformed, dropped) and transport',
      labelNames: ['result', 'transport'],
      registers,
      collect() {
        for (let i = 0; i < uncounted.length; i++) {
          if (uncounted[i] === 0) continue;
          const result = DNS_RESULTS[Math.floor(i / DNS_TRANSPORTS.length)]!;
          this.inc({ result, transport: DNS_TRANSPORTS[i % DNS_TRANSPORTS.length]! }, uncounted[i]);
          uncounted[i] = 0;
        }
      },
    });
    // prom-client renders any registered object whose get() gives a metric's values; its types know only its own classes.
    for (const registry of registers) registry.registerMetric(this.#latencyHistogram() as unknown as Metric);
  }

  observe(query: DnsQueryObservation): void {
    const result = DNS_RESULT_INDEX[query.result];
    const count = query.count ?? 1;
    this.#uncounted[DNS_TRANSPORTS.length * result + (query.transport === 'udp' ? 0 : 1)]! += count;
    // The first bound the latency is within, as prom-client's Histogram finds it; past them all, the last slot.
    let bucket = 0;
    while (bucket < LATENCY_BUCKETS.length && query.seconds > LATENCY_BUCKETS[bucket]!) bucket++;
    this.#buckets[(LATENCY_BUCKETS.length + 1) * result + bucket]! += count;
    this.#sums[result]! += query.seconds * count;
    this.#observed[result]! += count;
  }

  /** The histogram as prom-client's registry reads a metric: the series prom-client's Histogram would give. */
  #latencyHistogram() {
    const name = 'netctl_dns_query_duration_seconds';
    const get = () => {
      const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
      DNS_RESULTS.forEach((result, r) => {
        if (this.#observed[r] === 0) return;
        let cumulative = 0;
        LATENCY_BUCKETS.forEach((le, b) => {
          cumulative += this.#buckets[(LATENCY_BUCKETS.length + 1) * r + b]!;
          values.push({ labels: { le, result }, value: cumulative, metricName: `${name}_bucket` });
        });
        values.push({ labels: { le: '+Inf', result }, value: this.#observed[r]!, metricName: `${name}_bucket` });
        values.push({ labels: { result }, value: this.#sums[r]!, metricName: `${name}_sum` });
        values.push({ labels: { result }, value: this.#observed[r]!, metricName: `${name}_count` });
      });
      return Promise.resolve({ name, help: 'Embedded DNS query latency by result', type: 'histogram', values, aggregator: 'sum' });
    };
    return {
      name,
      type: 'histogram',
      get,
      reset: () => {
        this.#buckets.fill(0);
        this.#sums.fill(0);
        this.#observed.fill(0);
      },
    };
  }
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : 'unknown';
}

export class DaemonMetrics {
  readonly registry = new Registry();
  #listNetworks: () => Promise<DockerNetwork[]> = async () => [];
  #vtep: VtepCounterSource | undefined;
  #dns: () => Pick<EmbeddedDns, 'countReplays'> | undefined = () => undefined;
  #esp: EspCounterSource | undefined;
  #snapshot: Snapshot = EMPTY;
  #rendering: Promise<string> | undefined;
  readonly #requests: Counter<'route' | 'method' | 'status'>;
  readonly #requestSeconds: Histogram<'route' | 'method'>;
  readonly #storeSeconds: Histogram<'store' | 'operation'>;
  readonly #storeErrors: Counter<'store' | 'operation' | 'code'>;
  readonly #dnsQueries: DnsQueryMetrics;
  readonly #listErrors: Counter;

  constructor(options: DaemonMetricsOptions = {}) {
    const registers = [this.registry];
    // Event loop lag sampled every 100 ms, not prom-client's 10: its timer woke an idle daemon 100 times a second.
    if (options.processMetrics === true) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
    this.#requests = new Counter({
      name: 'netctl_api_requests_total',
      help: 'API requests by route pattern, method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
    });
    this.#requestSeconds = new Histogram({
      name: 'netctl_api_request_duration_seconds',
      help: 'API request latency by route pattern and method',
      labelNames: ['route', 'method'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#storeSeconds = new Histogram({
      name: 'netctl_store_operation_duration_seconds',
      help: 'Store operation latency (failed ones included) by store (local, cluster) and operation',
      labelNames: ['store', 'operation'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#storeErrors = new Counter({
      name: 'netctl_store_operation_errors_total',
      help: 'Failed store operations by store, operation and error code',
      labelNames: ['store', 'operation', 'code'],
      registers,
    });
    this.#dnsQueries = new DnsQueryMetrics(registers);
    this.#listErrors = new Counter({
      name: 'netctl_metrics_network_list_errors_total',
      help: 'Scrapes that could not list the networks (their network and endpoint metrics are missing)',
      registers,
    });
    this.#registerScraped();
  }

  /** Lists the networks at scrape time, for the endpoint gauge and the VTEP's network names. */
  setNetworkSource(listNetworks: () => Promise<DockerNetwork[]>): void {
    this.#listNetworks = listNetworks;
  }

  /** The embedded DNS once it runs (it starts after the daemon), asked before each scrape to count the replies its addon gave. */
  setDns(dns: () => Pick<EmbeddedDns, 'countReplays'> | undefined): void {
    this.#dns = dns;
  }

  setVtep(vtep: VtepCounterSource): void {
    this.#vtep = vtep;
  }

  /** The ESP table of encrypted overlays, for its datagrams and drops by reason. */
  setEsp(esp: EspCounterSource): void {
    this.#esp = esp;
  }

  observeRequest(route: string, method: string, status: number, seconds: number): void {
    this.#requests.inc({ route, method, status: String(status) });
    this.#requestSeconds.observe({ route, method }, seconds);
  }

  /** An observer for `ObservedStore` that labels what it reports with `store`. */
  storeObserver(store: 'local' | 'cluster'): StoreObserver {
    return (operation, seconds, error) => {
      this.#storeSeconds.observe({ store, operation }, seconds);
      if (error !== undefined) this.#storeErrors.inc({ store, operation, code: errorCode(error) });
    };
  }

  /** The `onQuery` observer of the DNS server. */
  readonly onDnsQuery = (query: DnsQueryObservation): void => {
    this.#dnsQueries.observe(query);
  };

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The text exposition; scrapes that arrive while one renders share its result. */
  render(): Promise<string> {
    this.#rendering ??= this.#render().finally(() => {
      this.#rendering = undefined;
    });
    return this.#rendering;
  }

  async #render(): Promise<string> {
    this.#dns()?.countReplays();
    let networks: DockerNetwork[] = [];
    try {
      networks = await this.#listNetworks();
    } catch {
      this.#listErrors.inc();
    }
    const names = new Map<number, string>();
    for (const network of networks) {
      const vni = network.Options[VXLAN_ID_OPTION];
      if (vni !== undefined) names.set(Number(vni), network.Name);
    }
    const vtep = this.#vtep;
    this.#snapshot = {
      networks,
      names,
      vtep: vtep === undefined ? undefined : { stats: { ...vtep.stats }, networks: vtep.networkStats(), peers: vtep.peerStates() },
      esp: this.#esp === undefined ? undefined : { sealed: this.#esp.totals('outbound'), opened: this.#esp.totals('inbound') },
    };
    try {
      return await this.registry.metrics();
    } finally {
      this.#snapshot = EMPTY;
    }
  }

  /** Metrics whose values are read from the snapshot `render` takes. */
  #registerScraped(): void {
    const registers = [this.registry];
    const snapshot = (): Snapshot => this.#snapshot;
    new Gauge({
      name: 'netctl_network_endpoints',
      help: "Endpoints of this host's sandboxes per network",
      labelNames: ['network', 'driver'],
      registers,
      collect() {
        this.reset();
        for (const network of snapshot().networks) {
          this.set({ network: network.Name, driver: network.Driver }, Object.keys(network.Containers).length);
        }
      },
    });
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[], read: (emit: (labels: Record<L, string | number>, value: number) => void) => void): void => {
      new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          read((labels, value) => this.inc(labels, value));
        },
      });
    };
    const vtep = () => snapshot().vtep;
    const networks = () => (vtep()?.networks ?? []).map((network) => ({ network, labels: { network: snapshot().names.get(network.vni) ?? '', vni: network.vni } }));

    counter('netctl_vtep_frames_total', 'Frames the VTEP read from (rx) and wrote to (tx) its frame ports (TAPs)', ['direction'], (emit) => {
      const stats = vtep()?.stats;
      if (stats === undefined) return;
      emit({ direction: 'rx' }, stats.rxFrames);
      emit({ direction: 'tx' }, stats.txFrames);
    });
    counter('netctl_vtep_datagrams_total', 'Datagrams the VTEP received from (rx, dropped ones included) and sent to (tx) the underlay', ['direction'], (emit) => {
      const stats = vtep()?.stats;
      if (stats === undefined) return;
      emit({ direction: 'rx' }, stats.rxDatagrams);
      emit({ direction: 'tx' }, stats.txDatagrams);
    });
    counter('netctl_vtep_drops_total', 'Frames and datagrams the VTEP dropped, by reason (also those of no known network)', ['reason'], (emit) => {
      const stats = vtep()?.stats;
      if (stats !== undefined) for (const [reason, value] of drops(stats)) emit({ reason }, value);
    });
    counter('netctl_vtep_network_frames_total', "Frames read from (rx) and written to (tx) a network's TAP", ['network', 'vni', 'direction'], (emit) => {
      for (const { network, labels } of networks()) {
        emit({ ...labels, direction: 'rx' }, network.counters.rxFrames);
        emit({ ...labels, direction: 'tx' }, network.counters.txFrames);
      }
    });
    counter('netctl_vtep_network_datagrams_total', "A network's datagrams accepted from (rx) and sent to (tx) other VTEPs", ['network', 'vni', 'direction'], (emit) => {
      for (const { network, labels } of networks()) {
        emit({ ...labels, direction: 'rx' }, network.counters.rxDatagrams);
        emit({ ...labels, direction: 'tx' }, network.counters.txDatagrams);
      }
    });
    counter('netctl_vtep_network_bytes_total', "Inner frame bytes of a network's datagrams from (rx) and to (tx) other VTEPs", ['network', 'vni', 'direction'], (emit) => {
      for (const { network, labels } of networks()) {
        emit({ ...labels, direction: 'rx' }, network.counters.rxBytes);
        emit({ ...labels, direction: 'tx' }, network.counters.txBytes);
      }
    });
    counter('netctl_vtep_network_drops_total', "A network's dropped frames and datagrams by reason", ['network', 'vni', 'reason'], (emit) => {
      for (const { network, labels } of networks()) for (const [reason, value] of drops(network.counters)) emit({ ...labels, reason }, value);
    });
    counter('netctl_vtep_network_answered_total', 'ARP requests and IPv6 neighbour solicitations the VTEP answered from its peer table', ['network', 'vni', 'protocol'], (emit) => {
      for (const { network, labels } of networks()) {
        emit({ ...labels, protocol: 'arp' }, network.counters.arpAnswered);
        emit({ ...labels, protocol: 'nd' }, network.counters.ndAnswered);
      }
    });
    counter('netctl_vtep_network_flooded_total', "A network's frames replicated to every flood target", ['network', 'vni'], (emit) => {
      for (const { network, labels } of networks()) emit(labels, network.counters.flooded);
    });
    counter('netctl_vtep_network_learned_total', "MACs a network learned from external peers' traffic", ['network', 'vni'], (emit) => {
      for (const { network, labels } of networks()) emit(labels, network.counters.learned);
    });
    counter('netctl_esp_datagrams_total', 'Datagrams of encrypted overlays sealed (sent) and opened (taken in)', ['direction'], (emit) => {
      const esp = snapshot().esp;
      if (esp === undefined) return;
      emit({ direction: 'sealed' }, esp.sealed.packets);
      emit({ direction: 'opened' }, esp.opened.packets);
    });
    counter('netctl_esp_drops_total', 'Received ESP datagrams dropped, by reason (replayed, bad_icv, truncated, unknown_spi, bad_trailer…)', ['reason'], (emit) => {
      const drops = snapshot().esp?.opened.drops ?? {};
      for (const [reason, value] of Object.entries(drops) as [string, number][]) emit({ reason: snakeCase(reason) }, value);
    });
    const peers = () => networks().flatMap(({ network, labels }) => network.peers.map((peer) => ({ peer, labels: { ...labels, peer: peer.address } })));
    counter('netctl_vtep_peer_datagrams_total', "A network's datagrams accepted from (rx) and sent to (tx) one remote VTEP", ['network', 'vni', 'peer', 'direction'], (emit) => {
      for (const { peer, labels } of peers()) {
        emit({ ...labels, direction: 'rx' }, peer.rxDatagrams);
        emit({ ...labels, direction: 'tx' }, peer.txDatagrams);
      }
    });
    counter('netctl_vtep_peer_bytes_total', "Inner frame bytes of a network's datagrams from (rx) and to (tx) one remote VTEP", ['network', 'vni', 'peer', 'direction'], (emit) => {
      for (const { peer, labels } of peers()) {
        emit({ ...labels, direction: 'rx' }, peer.rxBytes);
        emit({ ...labels, direction: 'tx' }, peer.txBytes);
      }
    });
    counter('netctl_vtep_peer_drops_total', "Datagrams from one remote VTEP a network dropped, by reason", ['network', 'vni', 'peer', 'reason'], (emit) => {
      for (const { peer, labels } of peers()) for (const [reason, value] of drops(peer)) emit({ ...labels, reason }, value);
    });
    // Per VTEP, not per network: one probe stream serves every network a peer shares with us.
    new Gauge({
      name: 'netctl_vtep_peer_up',
      help: 'Whether a netctl peer VTEP answers probes on the data path (1) or stopped (0); peers without a verdict yet are absent',
      labelNames: ['peer'],
      registers,
      collect() {
        this.reset();
        for (const peer of vtep()?.peers ?? []) if (peer.state !== 'unknown') this.set({ peer: peer.address }, peer.state === 'up' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'netctl_vtep_peer_rtt_seconds',
      help: "Round trip of the last probe a netctl peer VTEP answered (kept while it is down)",
      labelNames: ['peer'],
      registers,
      collect() {
        this.reset();
        for (const peer of vtep()?.peers ?? []) if (peer.rttMs !== undefined) this.set({ peer: peer.address }, peer.rttMs / 1000);
      },
    });
  }
}

/** Parses `IP:PORT` (`[IPv6]:PORT` for IPv6). */
export function parseMetricsAddress(text: string): MetricsAddress {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const address = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  const family = match?.[1] !== undefined ? 6 : 4;
  if (address === undefined || isIP(address) !== family || port < 1 || port > 65535) {
    throw new InvalidArgument(`invalid --metrics-addr "${text}": IP:PORT with a port from 1 to 65535, e.g. 198.18.0.1:9323 or [::1]:9323`);
  }
  return { address, port };
}

/**
 * Serves GET /metrics, and nothing else, over TCP. `close` stops listening
 * and lets scrapes in flight finish.
 */
export class MetricsServer {
  readonly #server: Server;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async listen(metrics: DaemonMetrics, at: MetricsAddress): Promise<MetricsServer> {
    const server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://netctl').pathname;
      if (path !== '/metrics') {
        res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('page not found\n');
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { 'Content-Type': 'text/plain; charset=utf-8', Allow: 'GET, HEAD' }).end('method not allowed\n');
        return;
      }
      metrics.render().then(
        (text) => {
          res.writeHead(200, { 'Content-Type': metrics.contentType, 'Content-Length': Buffer.byteLength(text) });
          res.end(req.method === 'HEAD' ? undefined : text);
        },
        (err: unknown) => {
          res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`${String(err)}\n`);
        },
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(at.port, at.address, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new MetricsServer(server);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeIdleConnections();
    });
  }
}
