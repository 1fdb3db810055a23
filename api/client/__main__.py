from api.client.cli import main

main()
