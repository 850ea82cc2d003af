// CommonJS callers: require() of the ESM package works where Node has require(esm) (20.19+, 22.12+).
const { ApiClient } = require('netctl/client');
const { openHost } = require('netctl');
const { MemoryStore } = require('netctl/testing');
console.log(JSON.stringify({ ApiClient: typeof ApiClient, openHost: typeof openHost, MemoryStore: typeof MemoryStore }));
