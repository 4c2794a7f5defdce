// npm run build: the package builds and the browser-ready module.
// - dist/esm/index.js: ES module for bundlers and Node (import);
// - dist/cjs/index.cjs: CommonJS (require);
// - dist/index.js: one minified ES module with no bare imports, for a
//   <script type="module"> straight from the gateway or a CDN;
// - dist/types/: declarations (tsc).
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root);
rmSync('dist', { recursive: true, force: true });
const common = { entryPoints: ['src/index.ts'], bundle: true, target: 'es2020', platform: 'neutral', logLevel: 'warning' };
await build({ ...common, format: 'esm', outfile: 'dist/esm/index.js' });
await build({ ...common, format: 'cjs', outfile: 'dist/cjs/index.cjs' });
await build({ ...common, format: 'esm', minify: true, outfile: 'dist/index.js' });
execFileSync(join(root, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], { stdio: 'inherit' });
console.log('build: dist/esm/index.js, dist/cjs/index.cjs, dist/index.js (minified), dist/types/');
