// A simulated fault for two e2e tests (`a_webcrypto_failure_is_a_503_not_a_bad_signature` and
// `a_webcrypto_failure_on_a_pushed_list_is_a_503_and_the_retry_is_taken`): the built worker in a
// runtime whose WebCrypto `verify` rejects its first call, as a broken runtime's might, and works
// after. It shows what the worker answers then, not that workerd or Cloudflare ever fails this
// way.
import worker from '../../edge/build/index.js';

const verify = crypto.subtle.verify.bind(crypto.subtle);
let failures = 1;
crypto.subtle.verify = (...args) =>
  failures-- > 0 ? Promise.reject(new Error('simulated WebCrypto failure')) : verify(...args);

export default worker;
