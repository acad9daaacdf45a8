// The "Use the API" snippets: curl and Python (requests) calls of POST /api/predict, with this
// page's own origin filled in (and the self-signed certificate accepted where the server has one).

export function curlSnippet(origin, selfSigned = false) {
  return `curl ${selfSigned ? '-k ' : ''}-F file=@speech.wav ${origin}/api/predict`;
}

export function pythonSnippet(origin, selfSigned = false) {
  return [
    'import requests',
    '',
    `url = "${origin}/api/predict"`,
    'with open("speech.wav", "rb") as f:',
    ...(selfSigned ? ['    # verify=False: the server\'s own (self-signed) certificate'] : []),
    `    r = requests.post(url, files={"file": f}${selfSigned ? ', verify=False' : ''})`,
    'r.raise_for_status()',
    'print(r.json()["label"], r.json()["probabilities"])',
  ].join('\n');
}

// els: {curl, python}; share: the answer of GET /api/share, or null.
export function showApiHelp(els, share, origin = window.location.origin) {
  const selfSigned = Boolean(share && share.self_signed) && origin.startsWith('https:');
  els.curl.textContent = curlSnippet(origin, selfSigned);
  els.python.textContent = pythonSnippet(origin, selfSigned);
}
