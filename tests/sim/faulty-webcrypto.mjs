// A simulated fault for one e2e test (`a_webcrypto_failure_is_a_503_not_a_bad_signature`): the
// built worker in a runtime whose WebCrypto `verify` rejects, as a broken runtime's might. It
// shows what the worker answers then, not that workerd or Cloudflare ever fails this way.
import worker from '../../edge/build/index.js';

crypto.subtle.verify = () => Promise.reject(new Error('simulated WebCrypto failure'));

export default worker;
