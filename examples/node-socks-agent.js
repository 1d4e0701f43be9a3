// A Node script fetching a page on the device's network through the helper's SOCKS port,
// with the socks-proxy-agent package (npm i socks-proxy-agent). Usage:
//   SOCKS_URL=socks5h://127.0.0.1:1080 node examples/node-socks-agent.js http://printer.lan/
'use strict';
const http = require('node:http');
const { SocksProxyAgent } = require('socks-proxy-agent');

const url = process.argv[2];
if (!url) {
  console.error('usage: node examples/node-socks-agent.js URL');
  process.exit(2);
}
// socks5h: the device resolves names, so internal names like printer.lan work.
const agent = new SocksProxyAgent(process.env.SOCKS_URL || 'socks5h://127.0.0.1:1080');
http.get(url, { agent }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (c) => { body += c; });
  res.on('end', () => {
    console.log(`${res.statusCode} ${body.length} bytes`);
    process.stdout.write(body);
    process.exit(res.statusCode < 400 ? 0 : 1);
  });
}).on('error', (err) => {
  console.error(`request failed: ${err.message}`);
  process.exit(1);
});
