/**
 * Tunables read from the environment (`BROKER_*`), used as fallbacks below flags.
 * Precedence everywhere: flags → BROKER_* env → defaults.
 */

/** Read a duration in milliseconds from env (`BROKER_DIAL_TIMEOUT=2500`, or with unit: `2.5s`, `500ms`). */
export function envDuration(name: string, fallbackMs: number, env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallbackMs;
  const ms = parseDuration(raw);
  return ms ?? fallbackMs;
}

/** Parse `1500`, `1500ms`, `2s`, `1.5m`; null when not a duration. */
export function parseDuration(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!m) return null;
  const n = Number(m[1]);
  const unit = m[2] ?? 'ms';
  const factor = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000;
  const ms = Math.round(n * factor);
  return Number.isFinite(ms) ? ms : null;
}

/** Parse `HOST:PORT` / `[v6]:PORT` / `PORT` into listen options. */
export function parseListen(text: string, defaultHost: string): { host: string; port: number } | null {
  const v6 = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text);
  const hp = /^([^:]*):(\d{1,5})$/.exec(text);
  const p = /^(\d{1,5})$/.exec(text);
  const host = v6?.[1] ?? hp?.[1] ?? (p ? defaultHost : undefined);
  const port = Number(v6?.[2] ?? hp?.[2] ?? p?.[1]);
  if (host === undefined || !Number.isInteger(port) || port < 0 || port > 65535) return null;
  return { host: host === '' ? defaultHost : host, port };
}

/** Format a bound address as `HOST:PORT` (`[v6]:PORT`). */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
