/**
 * Options a stock `ssh -R 0 ... expose@broker -- --allow X` agent can pass as its
 * command line, since it cannot send a JSON descriptor. Same rules as the native
 * agent's flags; parsing errors name the flag.
 */
import { BrokerError } from '../errors';

export interface StockExposeArgs {
  allow: string[];
  deny: string[];
  label?: string;
  maxHelpers?: number;
}

/** Parse `[expose] [--allow R]... [--deny R]... [--label L] [--max-helpers N]`. */
export function parseStockExposeArgs(command: string): StockExposeArgs {
  const tokens = command.trim().split(/\s+/).filter(Boolean);
  if (tokens[0] === 'expose') tokens.shift();
  const out: StockExposeArgs = { allow: [], deny: [] };
  for (let i = 0; i < tokens.length; i++) {
    const flag = tokens[i]!;
    const eq = flag.indexOf('=');
    const name = eq > 0 ? flag.slice(0, eq) : flag;
    const value = eq > 0 ? flag.slice(eq + 1) : tokens[++i];
    if (value === undefined) throw new BrokerError('BRK_BAD_OPTION', `${name} needs a value`);
    switch (name) {
      case '--allow': out.allow.push(value); break;
      case '--deny': out.deny.push(value); break;
      case '--label': out.label = value; break;
      case '--max-helpers': {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 1) throw new BrokerError('BRK_BAD_OPTION', `--max-helpers must be a positive whole number, got "${value}"`);
        out.maxHelpers = n;
        break;
      }
      default:
        throw new BrokerError('BRK_BAD_OPTION', `unknown option "${name}"; stock ssh agents may pass --allow, --deny, --label and --max-helpers`);
    }
  }
  return out;
}
