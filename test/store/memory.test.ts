import { MemoryStore } from '../../src/store/memory.js';
import { StoreClosed } from '../../src/store/types.js';
import { storeCompliance } from './compliance.js';

storeCompliance('MemoryStore', async () => {
  const store = new MemoryStore();
  return {
    store,
    cleanup: async () => {
      await store.close().catch((err: unknown) => {
        if (!(err instanceof StoreClosed)) throw err;
      });
    },
  };
});
