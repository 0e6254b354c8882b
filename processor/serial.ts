/**
 * Runs async steps one at a time, in call order: a stage's batch handler and
 * its timer both write transactions through one producer, and a kafkajs
 * transactional producer allows one open transaction.
 */
export interface Serial {
  run<T>(f: () => Promise<T>): Promise<T>;
  /** Resolves once everything queued so far has run (failures included). */
  idle(): Promise<void>;
}

export function createSerial(): Serial {
  let chain: Promise<void> = Promise.resolve();
  return {
    run(f) {
      const r = chain.then(f);
      chain = r.then(() => {}, () => {});
      return r;
    },
    idle: () => chain,
  };
}
