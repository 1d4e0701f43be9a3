/**
 * Sessions and the registry that finds them by code. The registry sits behind a
 * small interface so that a shared (Redis) registry can replace the in-memory one
 * when several brokers serve one address.
 */
import type { Duplex } from 'node:stream';
import type { ControlEvent, EndReason, HelperInfo } from '../protocol/control';
import type { Descriptor } from '../protocol/descriptor';
import type { Policy } from '../policy/policy';
import { sessionCodeDigest, sessionCodesEqual, redactSessionCode } from '../protocol/session-code';
import type { AgentLink } from './agent-link';

/** The broker's view of one connected helper. */
export interface HelperLink {
  readonly info: HelperInfo;
  /** Send a control event to this helper (JSON or text, whichever it speaks). */
  sendEvent(ev: ControlEvent): void;
  /** Tell the helper why its session ended and disconnect it. */
  end(reason: EndReason, message: string): void;
}

/** One exposed device and the helpers attached to it. */
export class Session {
  readonly codeDigest: string;
  readonly helpers = new Map<number, HelperLink>();
  /** Open helper streams, destroyed when the session ends. */
  readonly streams = new Set<Duplex>();
  readonly createdAt = Date.now();
  readonly expiresAt: number | undefined;
  ended = false;
  /** The agent's public-key fingerprint, deleted when its tunnel drops (claim 3). */
  agentKey: string | undefined;

  constructor(
    readonly id: number,
    readonly code: string,
    readonly descriptor: Descriptor,
    readonly policy: Policy,
    readonly agent: AgentLink,
  ) {
    this.codeDigest = sessionCodeDigest(code);
    this.redactedCode = redactSessionCode(code);
    this.agentKey = agent.fingerprint;
    this.expiresAt = descriptor.expiresAt ? Date.parse(descriptor.expiresAt) : undefined;
  }

  /** For logs: never the full code (computed once: every stream's audit line carries it). */
  readonly redactedCode: string;

  get maxHelpers(): number | undefined {
    return this.descriptor.maxHelpers;
  }

  /** Send an event to the agent and every helper. */
  broadcast(ev: ControlEvent, exceptHelper?: number): void {
    this.agent.sendEvent(ev);
    for (const [id, h] of this.helpers) if (id !== exceptHelper) h.sendEvent(ev);
  }
}

/** Where sessions live; in-memory today, shared later. */
export interface SessionRegistry {
  add(session: Session): void;
  /** Find a live session by its (normalised) code, comparing in constant time. */
  findByCode(code: string): Session | undefined;
  remove(session: Session): void;
  all(): Iterable<Session>;
  readonly size: number;
}

/** In-memory registry keyed by the code's SHA-256 digest (lookups never compare raw codes). */
export class MemorySessionRegistry implements SessionRegistry {
  private readonly byDigest = new Map<string, Session>();

  add(session: Session): void {
    this.byDigest.set(session.codeDigest, session);
  }

  findByCode(code: string): Session | undefined {
    const s = this.byDigest.get(sessionCodeDigest(code));
    return s && sessionCodesEqual(s.code, code) && !s.ended ? s : undefined;
  }

  remove(session: Session): void {
    if (this.byDigest.get(session.codeDigest) === session) this.byDigest.delete(session.codeDigest);
  }

  all(): Iterable<Session> {
    return [...this.byDigest.values()];
  }

  get size(): number {
    return this.byDigest.size;
  }
}
