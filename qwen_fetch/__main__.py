from qwen_fetch.cli.app import main

main()
