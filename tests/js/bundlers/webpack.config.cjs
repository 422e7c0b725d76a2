// webpack 5 with no loaders: it emits the .wasm as an asset from the package's
// `new URL(..., import.meta.url)`.
const path = require('node:path');

module.exports = {
  mode: 'production',
  context: __dirname,
  entry: './main.js',
  experiments: { topLevelAwait: true },
  output: { path: path.join(__dirname, 'dist-webpack'), filename: 'main.js', clean: true },
  performance: { hints: false },
};
