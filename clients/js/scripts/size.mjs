// npm run size: the browser module, minified and gzipped, must stay within
// the budget (docs/JS_CLIENT.md: 10 KB; socket.io-client is about 14 KB).
// It must also import nothing (no bare imports: it runs as it is in a page).
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const BUDGET = 10 * 1024;
const src = readFileSync(new URL('../dist/index.js', import.meta.url));
const gz = gzipSync(src, { level: 9 }).length;
const text = src.toString();
if (/\bimport\s*[^(]*\bfrom\s*["']/.test(text) || /\brequire\(/.test(text)) {
  console.error('size: dist/index.js imports something: it must be self-contained');
  process.exit(1);
}
console.log(`size: dist/index.js ${src.length} B minified, ${gz} B min+gzip (budget ${BUDGET} B)`);
if (gz > BUDGET) {
  console.error(`size: over budget by ${gz - BUDGET} B`);
  process.exit(1);
}
