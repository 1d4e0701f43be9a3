/**
 * SSH authentication on the broker. The user name picks the role: `expose` is an
 * agent, anything else is read as a session code (helper). Every peer must prove
 * a public key. Refusals are explained: ssh2 cannot put text in an auth failure, so
 * the reason travels as keyboard-interactive instructions, which OpenSSH prints and
 * our clients turn back into a typed error.
 */
import type { AuthContext } from 'ssh2';
import { utils } from 'ssh2';
import { BrokerError } from '../errors';
import { EXPOSE_USER } from '../protocol/constants';
import { normalizeSessionCode, redactSessionCode } from '../protocol/session-code';
import { fingerprintOf } from '../transport/keys';
import type { JoinRateLimiter } from './join-limiter';
import type { Session, SessionRegistry } from './sessions';

/** Who a connection turned out to be once authenticated. */
export type Principal =
  | { role: 'agent'; fingerprint: string }
  | { role: 'helper'; fingerprint: string; session: Session };

export interface AuthDeps {
  registry: SessionRegistry;
  limiter: JoinRateLimiter;
  /** Source IP of the connection (for rate limiting). */
  ip: string;
  onRefused: (err: BrokerError, user: string) => void;
}

/**
 * Build the `authentication` listener for one connection. `getPrincipal()` returns
 * the authenticated identity after `ready`.
 */
export function createAuthenticator(deps: AuthDeps): { onAuth: (ctx: AuthContext) => void; getPrincipal: () => Principal | undefined } {
  let principal: Principal | undefined;
  let decidedFor: string | undefined;
  let refusal: BrokerError | undefined;
  let session: Session | undefined;
  let failureRecorded = false;

  // Decide once per user name what this connection may become.
  const decide = (user: string) => {
    if (decidedFor === user) return;
    decidedFor = user;
    refusal = undefined;
    session = undefined;
    if (user === EXPOSE_USER) return;
    const gate = deps.limiter.check(deps.ip);
    if (!gate.allowed) {
      refusal = new BrokerError('BRK_RATE_LIMITED', `too many failed joins from ${deps.ip}; try again in ${Math.ceil(gate.retryAfterMs / 1000)} s`);
      return;
    }
    const code = normalizeSessionCode(user);
    const found = code ? deps.registry.findByCode(code) : undefined;
    if (!found) {
      refusal = new BrokerError('BRK_BAD_CODE', `session code "${code ? redactSessionCode(code) : 'that user name'}" is not valid or the session has ended; check the code the device shows`);
      if (!failureRecorded) {
        failureRecorded = true;
        deps.limiter.recordFailure(deps.ip);
      }
      return;
    }
    const max = found.maxHelpers;
    if (max !== undefined && found.helpers.size >= max) {
      refusal = new BrokerError('BRK_SESSION_FULL', `the session already has its maximum of ${max} helpers`);
      return;
    }
    session = found;
  };

  const onAuth = (ctx: AuthContext) => {
    decide(ctx.username);
    switch (ctx.method) {
      case 'publickey': {
        if (refusal) return ctx.reject(['keyboard-interactive']);
        const key = utils.parseKey(ctx.key.data);
        if (key instanceof Error) return ctx.reject(['publickey', 'keyboard-interactive']);
        if (ctx.signature) {
          if (!ctx.blob || key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) return ctx.reject(['publickey', 'keyboard-interactive']);
          const fingerprint = fingerprintOf(ctx.key.data);
          if (session) {
            if (session.ended) return ctx.reject();
            deps.limiter.recordSuccess(deps.ip);
            principal = { role: 'helper', fingerprint, session };
          } else {
            principal = { role: 'agent', fingerprint };
          }
        }
        return ctx.accept();
      }
      case 'keyboard-interactive': {
        const err = refusal ?? new BrokerError('BRK_AUTH_FAILED', 'a public key is required: create one with `ssh-keygen -t ed25519` (or use broker-agent)');
        deps.onRefused(err, ctx.username);
        // Zero prompts: the client shows name + instructions, answers nothing, and we refuse.
        ctx.prompt([], `broker: ${err.code}`, err.message, () => ctx.reject());
        return;
      }
      default:
        return ctx.reject(['publickey', 'keyboard-interactive']);
    }
  };
  return { onAuth, getPrincipal: () => principal };
}
