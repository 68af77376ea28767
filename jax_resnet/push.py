"""`jax-resnet push`: upload a trained model to the Hugging Face Hub as a model repository
(jax_resnet.sharing: model.safetensors, config.json, README.md model card, curves.png).

    jax-resnet push --workdir runs/finetune --repo me/my-resnet [--private] [--layout timm]

The token is huggingface_hub's (HF_TOKEN, or `hf auth login`); HF_ENDPOINT chooses the Hub.
"""

import argparse
import sys


def _parser(prog: str):
  parser = argparse.ArgumentParser(
      prog=prog, description=__doc__.strip().splitlines()[0],
      epilog='example:\n  jax-resnet push --workdir runs/finetune --repo me/my-resnet\n'
             "  python -c \"import timm; timm.create_model('hf-hub:me/my-resnet', "
             'pretrained=True)"',
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', required=True, help='a finished jax-resnet train workdir')
  parser.add_argument('--repo', required=True, help='the Hub repository, owner/name')
  parser.add_argument('--private', action='store_true', help='create the repository private')
  parser.add_argument('--layout', choices=('timm', 'jax_resnet'), default=None,
                      help="'timm' (timm's names and config; loads in timm and jax_resnet) "
                           "or 'jax_resnet' (every model); default: timm where the model has "
                           'a timm counterpart')
  return parser


def main(argv=None, prog: str = 'python -m jax_resnet.push') -> int:
  args = _parser(prog).parse_args(argv)
  from jax_resnet import sharing
  from jax_resnet.errors import UserError
  try:
    sharing.check_repo_id(args.repo)
    token = sharing._token(None)
    url, layout = sharing.push_to_hub(args.workdir, args.repo, args.layout, args.private,
                                      token)
  except UserError as error:
    print(f'push: error: {error}', file=sys.stderr)
    return 2
  print(f'pushed {args.workdir} to {args.repo} ({layout} layout): {url}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
