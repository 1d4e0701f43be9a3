/**
 * Broker metrics: per-stream counts are kept aside and reach prom-client when it
 * collects; every scrape sees all streams so far, across scrapes, labels intact.
 */
import { BrokerMetrics } from '../../src/broker/metrics';

function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('BrokerMetrics', () => {
  test('stream counts and bytes add up across scrapes', async () => {
    const m = new BrokerMetrics(() => 1, () => 2);
    try {
      let text = await m.registry.metrics();
      expect(value(text, 'broker_streams_total{via="socks",outcome="succeeded"}')).toBeUndefined();
      m.streamOpened('socks', 'succeeded', 0.002);
      m.streamOpened('socks', 'succeeded', 0.003);
      m.streamOpened('direct-tcpip', 'connection refused', 0.001);
      m.streamClosed(10, 0);
      text = await m.registry.metrics();
      expect(value(text, 'broker_streams_total{via="socks",outcome="succeeded"}')).toBe(2);
      expect(value(text, 'broker_streams_total{via="direct-tcpip",outcome="connection refused"}')).toBe(1);
      expect(value(text, 'broker_stream_bytes_total{direction="to_device"}')).toBe(10);
      expect(value(text, 'broker_stream_bytes_total{direction="to_helper"}')).toBe(0);
      expect(value(text, 'broker_stream_open_seconds_count{via="socks"}')).toBe(2);
      m.streamOpened('socks', 'succeeded', 0.002);
      m.streamClosed(5, 7);
      text = await m.registry.metrics();
      expect(value(text, 'broker_streams_total{via="socks",outcome="succeeded"}')).toBe(3);
      expect(value(text, 'broker_stream_bytes_total{direction="to_device"}')).toBe(15);
      expect(value(text, 'broker_stream_bytes_total{direction="to_helper"}')).toBe(7);
      expect(value(await m.registry.metrics(), 'broker_stream_bytes_total{direction="to_device"}')).toBe(15);
    } finally {
      await m.close();
    }
  });
});
