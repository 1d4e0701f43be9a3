/** `broker-agent exec`: the environment a child gets (proxy variables in both cases, NO_PROXY cleared). */
import { proxyEnv } from '../../src/cli/exec';

const SOCKS = 'socks5h://127.0.0.1:41000';
const HTTP = 'http://127.0.0.1:41001';

describe('proxyEnv', () => {
  test('sets ALL_PROXY (socks5h) and HTTP(S)_PROXY in upper and lower case', () => {
    const env = proxyEnv({}, SOCKS, HTTP);
    expect(env).toEqual({
      ALL_PROXY: SOCKS, all_proxy: SOCKS,
      HTTP_PROXY: HTTP, http_proxy: HTTP,
      HTTPS_PROXY: HTTP, https_proxy: HTTP,
    });
  });

  test('clears NO_PROXY and no_proxy, so nothing bypasses the device', () => {
    const env = proxyEnv({ NO_PROXY: 'localhost,127.0.0.1,.corp', no_proxy: '*' }, SOCKS, HTTP);
    expect('NO_PROXY' in env).toBe(false);
    expect('no_proxy' in env).toBe(false);
  });

  test('replaces proxy variables the parent already had', () => {
    const env = proxyEnv({ HTTP_PROXY: 'http://corp-proxy:3128', https_proxy: 'http://corp-proxy:3128', ALL_PROXY: 'socks5://old:1080', all_proxy: 'x' }, SOCKS, HTTP);
    expect(env.HTTP_PROXY).toBe(HTTP);
    expect(env.https_proxy).toBe(HTTP);
    expect(env.ALL_PROXY).toBe(SOCKS);
    expect(env.all_proxy).toBe(SOCKS);
  });

  test('keeps everything else and does not touch the parent environment', () => {
    const base = { PATH: '/usr/bin:/bin', HOME: '/root', LANG: 'C.UTF-8', NO_PROXY: 'localhost', FTP_PROXY: 'ftp://x' };
    const copy = { ...base };
    const env = proxyEnv(base, SOCKS, HTTP);
    expect(base).toEqual(copy);
    expect(env).not.toBe(base);
    expect(env.PATH).toBe('/usr/bin:/bin');
    expect(env.HOME).toBe('/root');
    expect(env.LANG).toBe('C.UTF-8');
    expect(env.FTP_PROXY).toBe('ftp://x');
  });

  test('with the real process environment', () => {
    const env = proxyEnv(process.env, SOCKS, HTTP);
    expect(env.PATH).toBe(process.env.PATH);
    expect(env.all_proxy).toBe(SOCKS);
    expect(env.NO_PROXY).toBeUndefined();
  });
});
