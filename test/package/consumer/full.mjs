// The whole library: importing it loads no addon; the first call that needs
// one loads the prebuilt binary the package ships.
import { kernelNamespaces, openHost, Controller } from 'netctl';

globalThis.recordLoaded('import');
const isNetns = await kernelNamespaces.exists('/proc/self/ns/net');
globalThis.recordLoaded('after-call');
console.log(JSON.stringify({ openHost: typeof openHost, Controller: typeof Controller, isNetns }));
