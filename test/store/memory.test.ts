import { MemoryStore } from '../../src/store/memory.js';
import { storeCompliance } from './compliance.js';

storeCompliance('MemoryStore', async () => {
  const store = new MemoryStore();
  return {
    store,
    cleanup: () => store.close(),
  };
});
