// What the GatehouseClient tests in Node share: the token sets of the issuers they fake.

export const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
/** Polls `what` every 20 ms for up to 5 s (a bound against a hang, not a speed goal). */
export const settled = async (what) => {
  for (let waited = 0; !what() && waited < 5000; waited += 20) await new Promise((r) => setTimeout(r, 20));
  return what();
};
/** The issuer's answer with the `n`th token set of session `s1`, valid `expiresIn` seconds. */
export const tokenBody = (n, expiresIn = 60) => ({
  access_token: `${b64({ alg: 'none' })}.${b64({ sid: 's1', n })}.x`,
  refresh_token: `r${n}`,
  expires_in: expiresIn,
  token_type: 'Bearer',
});
