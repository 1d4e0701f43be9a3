/**
 * The shared vocabulary of the wire protocol: channel names, commands, limits and
 * default timeouts. Defined once here so broker, agent and helper cannot drift.
 */

/** Protocol version carried in the descriptor and the control channel hello. */
export const PROTOCOL_VERSION = 1;

/** SSH identification suffix of our programs (appears in `SSH-2.0-...`). */
export const SSH_IDENT = 'remote-assist-broker_0.1';

/** SSH user name an agent uses to expose a session (stock `ssh -R 0 expose@broker` too). */
export const EXPOSE_USER = 'expose';

/** exec command of the agent's control channel: descriptor in, session events out. */
export const EXPOSE_COMMAND = 'expose';

/** exec command of the helper's control channel: descriptor and session events out. */
export const DESCRIBE_COMMAND = 'describe';

/**
 * `direct-streamlocal@openssh.com` socket path that native helpers before
 * 2026-11-26 opened to get a SOCKS5 conversation in-band with the broker (the broker
 * relays the device's exact SOCKS reply). Current helpers use `direct-tcpip`; the
 * broker still serves this path.
 */
export const SOCKS_STREAM_PATH = 'socks5@remote-assist';

/** Bind address the native agent asks for in `tcpip-forward`. */
export const AGENT_FORWARD_ADDR = '127.0.0.1';

/** Hard limits on anything a peer can send us. */
export const Limits = {
  /** Largest descriptor (JSON bytes) the broker and helpers accept. */
  descriptorBytes: 16 * 1024,
  /** Largest single control-channel line. */
  controlLineBytes: 32 * 1024,
  /** Most allow/deny rules in a descriptor. */
  descriptorRules: 256,
  /** Longest label. */
  labelChars: 64,
  /** Most helpers a session can ever allow. */
  maxHelpers: 64,
  /** Most concurrent channels one SSH connection may hold open. */
  channelsPerConnection: 4096,
  /** Most sessions one broker holds. */
  sessions: 10000,
} as const;

/** Default timeouts (milliseconds). Each can be overridden via BROKER_* env vars (see config.ts). */
export const Timeouts = {
  /** SOCKS handshake on any side must complete within this. */
  socksHandshake: 10_000,
  /** The agent's TCP connect to a destination. */
  dial: 10_000,
  /** SSH connect + auth for clients. */
  sshReady: 20_000,
  /** Broker liveness sweep interval (claim 3). */
  checkInterval: 5_000,
  /** Time an agent has to send its descriptor after connecting. */
  exposeHandshake: 15_000,
  /** How long a pre-opened (pooled) channel may wait idle for its first byte. */
  poolIdle: 10 * 60_000,
} as const;

/**
 * Named device-leg opens (`protocol/named-open.ts`) between our broker and our agents.
 * BROKER_NAMED_OPENS=0 turns them off (an agent then does not announce them, a broker
 * ignores the announcement): streams then use SOCKS5 on pre-opened channels, as with
 * older agents and stock `ssh -R`.
 */
export const NAMED_OPENS = process.env.BROKER_NAMED_OPENS !== '0';

/** Pre-opened channels the broker keeps per device tunnel without named opens (BROKER_POOL_SIZE; 0 disables). */
export const POOL_SIZE = Math.max(0, Math.min(32, Number(process.env.BROKER_POOL_SIZE ?? 8) || 0));

/** Most pre-opened channels a pool grows to after bursts of connections (BROKER_POOL_MAX; at least POOL_SIZE). */
export const POOL_MAX = Math.max(POOL_SIZE, Math.min(64, Number(process.env.BROKER_POOL_MAX ?? 32) || 0));

/** Quiet time after which a grown pool halves back towards POOL_SIZE (BROKER_POOL_DECAY_MS). */
export const POOL_DECAY_MS = Math.max(100, Number(process.env.BROKER_POOL_DECAY_MS ?? 30_000) || 30_000);

/** Default listen addresses. */
export const Defaults = {
  /** `*` = every interface, IPv6 and IPv4 (like sshd). */
  brokerListen: '*:2222',
  socksListen: '127.0.0.1:1080',
  metricsListen: '127.0.0.1:9222',
} as const;
