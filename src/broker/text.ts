/**
 * Plain-text rendering of control events for stock OpenSSH clients, which see
 * their session channel as a terminal.
 */
import type { ControlEvent } from '../protocol/control';

/** One human line (no newline) for an event. */
export function eventText(ev: ControlEvent): string {
  switch (ev.event) {
    case 'session':
      return `session code: ${ev.code}`;
    case 'hello':
      return `joined session${ev.label ? ` "${ev.label}"` : ''} as helper #${ev.helper.id}`;
    case 'helper-joined':
      return `helper #${ev.helper.id} joined from ${ev.helper.address} (${ev.helper.fingerprint}); ${ev.helpers} connected`;
    case 'helper-left':
      return `helper #${ev.helper.id} left (${ev.reason}); ${ev.helpers} connected`;
    case 'session-ended':
      return `session ended: ${ev.message}`;
    case 'error':
      return `error ${ev.code}: ${ev.message}`;
  }
}

/** Terminal-safe multi-line text: CRLF line ends (a pty may be attached). */
export function crlf(text: string): string {
  return `${text.replace(/\r?\n/g, '\r\n')}\r\n`;
}

/** The stock OpenSSH command a helper runs to join (`ssh -N -D 1080 -p PORT CODE@HOST`). */
export function stockHelperCommand(code: string, brokerHostPort: string): string {
  const m = /^\[(.+)\]:(\d+)$/.exec(brokerHostPort) ?? /^(.+):(\d+)$/.exec(brokerHostPort);
  const host = m ? m[1]! : brokerHostPort;
  const port = m ? m[2]! : '2222';
  return `ssh -N -D 1080 -p ${port} ${code}@${host}`;
}
