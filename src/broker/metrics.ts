/**
 * Prometheus metrics for the broker (prom-client), served on `--metrics HOST:PORT`
 * at `/metrics`. Each broker has its own registry, so several brokers (or tests)
 * in one process never collide.
 */
import http from 'node:http';
import type net from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { BrokerError } from '../errors';

export class BrokerMetrics {
  readonly registry = new Registry();
  private readonly openSeconds: Histogram<'via'>;
  private readonly refusals: Counter<'code'>;
  private readonly ended: Counter<'reason'>;
  private readonly overruns: Counter<'peer'>;
  readonly keysDeleted: Counter;
  /**
   * Per-stream counts wait here and reach prom-client when it collects (a scrape):
   * its inc() validates and hashes the labels on every call, 2 % of the broker's
   * JavaScript per connection. Bounded by the label values (a few), not by streams.
   */
  private readonly pending = { streams: new Map<string, { via: string; outcome: string; n: number }>(), closed: false, toDevice: 0, toHelper: 0 };
  private server: http.Server | undefined;

  /** `sessions()` and `helpers()` are read at scrape time. */
  constructor(sessions: () => number, helpers: () => number) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'broker_process_' });
    new Gauge({ name: 'broker_sessions', help: 'Live sessions (exposed devices).', registers, collect() { this.set(sessions()); } });
    new Gauge({ name: 'broker_helpers', help: 'Connected helpers across all sessions.', registers, collect() { this.set(helpers()); } });
    const pending = this.pending;
    new Counter({
      name: 'broker_streams_total', help: 'Helper streams by path and outcome (SOCKS reply meaning).', labelNames: ['via', 'outcome'], registers,
      collect() {
        for (const { via, outcome, n } of pending.streams.values()) this.inc({ via, outcome }, n);
        pending.streams.clear();
      },
    });
    new Counter({
      name: 'broker_stream_bytes_total', help: 'Bytes relayed, by direction.', labelNames: ['direction'], registers,
      collect() {
        if (!pending.closed) return;
        this.inc({ direction: 'to_device' }, pending.toDevice);
        this.inc({ direction: 'to_helper' }, pending.toHelper);
        pending.closed = false;
        pending.toDevice = 0;
        pending.toHelper = 0;
      },
    });
    this.openSeconds = new Histogram({ name: 'broker_stream_open_seconds', help: 'Time from a helper asking to the device answering.', labelNames: ['via'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers });
    this.refusals = new Counter({ name: 'broker_join_refusals_total', help: 'Refused helper joins by error code.', labelNames: ['code'], registers });
    this.ended = new Counter({ name: 'broker_sessions_ended_total', help: 'Ended sessions by reason.', labelNames: ['reason'], registers });
    this.overruns = new Counter({ name: 'broker_stream_overruns_total', help: 'Streams cut because a peer sent past its SSH window, by peer (device or helper).', labelNames: ['peer'], registers });
    this.keysDeleted = new Counter({ name: 'broker_agent_keys_deleted_total', help: 'Agent keys deleted because their tunnel was gone.', registers });
  }

  streamOpened(via: string, outcome: string, seconds: number): void {
    const key = `${via}\n${outcome}`;
    const count = this.pending.streams.get(key);
    if (count) count.n++;
    else this.pending.streams.set(key, { via, outcome, n: 1 });
    this.openSeconds.observe({ via }, seconds);
  }

  streamClosed(toDevice: number, toHelper: number): void {
    this.pending.closed = true;
    this.pending.toDevice += toDevice;
    this.pending.toHelper += toHelper;
  }

  /** A stream was cut because `peer` sent more than its window allowed. */
  streamOverrun(peer: 'device' | 'helper'): void {
    this.overruns.inc({ peer });
  }

  joinRefused(code: string): void {
    this.refusals.inc({ code });
  }

  sessionEnded(reason: string): void {
    this.ended.inc({ reason });
  }

  /** Serve `/metrics`; resolves with the bound address. */
  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    this.server = http.createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: try /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'Content-Type': this.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(`${err.message}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', (err: NodeJS.ErrnoException) => reject(new BrokerError('BRK_BAD_OPTION', `cannot listen for metrics on ${host}:${port}: ${err.code ?? err.message} (choose another --metrics)`)));
      this.server!.listen(port, host, () => resolve());
    });
    const a = this.server.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.server?.listening ? this.server.close(() => resolve()) : resolve()));
  }
}
