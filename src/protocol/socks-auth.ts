/**
 * RFC 1929 username/password sub-negotiation, used between the broker and a native
 * agent only to label a stream with the helper it serves (`helper-<id>`), so the
 * device's live view can say who goes where even when the channel was pre-opened.
 * The broker pipelines greeting, sub-negotiation and request in one write.
 */
import { BrokerError } from '../errors';
import type { Parse } from './socks5';

const AUTH_VERSION = 0x01;

/** Encode `VER ULEN UNAME PLEN PASSWD`. */
export function encodeUserPass(user: string, pass = ''): Buffer {
  const u = Buffer.from(user, 'utf8');
  const p = Buffer.from(pass, 'utf8');
  if (u.length < 1 || u.length > 255 || p.length > 255) throw new BrokerError('BRK_BAD_REQUEST', 'SOCKS user/password must be 1-255 bytes');
  return Buffer.concat([Buffer.from([AUTH_VERSION, u.length]), u, Buffer.from([p.length]), p]);
}

/** Parse `VER ULEN UNAME PLEN PASSWD`. */
export function parseUserPass(buf: Buffer): Parse<{ user: string; pass: string }> {
  if (buf.length < 1) return { state: 'need-more' };
  if (buf[0] !== AUTH_VERSION) {
    return { state: 'error', error: new BrokerError('BRK_BAD_REQUEST', `SOCKS auth: version 0x${buf[0]!.toString(16)} (expected 0x01)`), reply: Buffer.from([AUTH_VERSION, 0xff]) };
  }
  if (buf.length < 2) return { state: 'need-more' };
  const ulen = buf[1]!;
  if (buf.length < 2 + ulen + 1) return { state: 'need-more' };
  const plen = buf[2 + ulen]!;
  const end = 3 + ulen + plen;
  if (buf.length < end) return { state: 'need-more' };
  return { state: 'ok', consumed: end, user: buf.subarray(2, 2 + ulen).toString('utf8'), pass: buf.subarray(3 + ulen, end).toString('utf8') };
}

/** Sub-negotiation status reply: 0x00 success. */
export function encodeAuthStatus(ok: boolean): Buffer {
  return Buffer.from([AUTH_VERSION, ok ? 0x00 : 0x01]);
}

/** Parse the 2-byte status reply. */
export function parseAuthStatus(buf: Buffer): Parse<{ ok: boolean }> {
  if (buf.length < 2) return { state: 'need-more' };
  if (buf[0] !== AUTH_VERSION) return { state: 'error', error: new BrokerError('BRK_INTERNAL', `SOCKS auth reply: version 0x${buf[0]!.toString(16)}`) };
  return { state: 'ok', consumed: 2, ok: buf[1] === 0x00 };
}

/** The user name that labels a stream with its helper. */
export function helperLabel(helperId: number): string {
  return `helper-${helperId}`;
}

/** Read the helper id back from a label, if it is one. */
export function helperFromLabel(user: string): number | undefined {
  const m = /^helper-(\d{1,9})$/.exec(user);
  return m ? Number(m[1]) : undefined;
}
