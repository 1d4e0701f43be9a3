/** Private files (keys, known brokers) are written to a temp file first, then moved into place. */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * Write `data` to a new mode-0600 temp file beside `file`, fsync'd, and return its
 * path; the caller links or renames it into place (and unlinks it on failure).
 */
export function writePrivateTemp(file: string, data: string): string {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  const fd = fs.openSync(tmp, 'wx', 0o600);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return tmp;
}
