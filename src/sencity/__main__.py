from sencity.cli import main

main()
