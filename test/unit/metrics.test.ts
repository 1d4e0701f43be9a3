/**
 * Broker metrics: per-stream counts are kept aside and reach prom-client when it
 * collects; every scrape sees all streams so far, across scrapes, labels intact.
 */
import { BrokerMetrics } from '../../src/broker/metrics';

/** The scrape's series named in `want`, by their full name with labels (absent ones left out). */
async function series(m: BrokerMetrics, want: string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const line of (await m.registry.metrics()).split('\n')) {
    const at = line.lastIndexOf(' ');
    if (want.includes(line.slice(0, at))) out[line.slice(0, at)] = Number(line.slice(at + 1));
  }
  return out;
}

const SOCKS_OK = 'broker_streams_total{via="socks",outcome="succeeded"}';
const DIRECT_REFUSED = 'broker_streams_total{via="direct-tcpip",outcome="connection refused"}';
const TO_DEVICE = 'broker_stream_bytes_total{direction="to_device"}';
const TO_HELPER = 'broker_stream_bytes_total{direction="to_helper"}';
const SOCKS_OPENS = 'broker_stream_open_seconds_count{via="socks"}';
const ALL = [SOCKS_OK, DIRECT_REFUSED, TO_DEVICE, TO_HELPER, SOCKS_OPENS];

describe('BrokerMetrics', () => {
  test('stream counts and bytes add up across scrapes', async () => {
    const m = new BrokerMetrics(() => 1, () => 2);
    try {
      expect(await series(m, [SOCKS_OK])).toEqual({});
      m.streamOpened('socks', 'succeeded', 0.002);
      m.streamOpened('socks', 'succeeded', 0.003);
      m.streamOpened('direct-tcpip', 'connection refused', 0.001);
      m.streamClosed(10, 0);
      expect(await series(m, ALL)).toEqual({ [SOCKS_OK]: 2, [DIRECT_REFUSED]: 1, [TO_DEVICE]: 10, [TO_HELPER]: 0, [SOCKS_OPENS]: 2 });
      m.streamOpened('socks', 'succeeded', 0.002);
      m.streamClosed(5, 7);
      expect(await series(m, [SOCKS_OK, TO_DEVICE, TO_HELPER])).toEqual({ [SOCKS_OK]: 3, [TO_DEVICE]: 15, [TO_HELPER]: 7 });
      expect(await series(m, [TO_DEVICE])).toEqual({ [TO_DEVICE]: 15 });
    } finally {
      await m.close();
    }
  });
});
